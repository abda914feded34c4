"""A sidecar's instance id stays the same across restarts: a kill switch on an instance must
hold when that instance's sidecar restarts and registers again.

`--instance-id` wins; without it the id is made once (`<agent>-<random>`) and kept in
`<data-dir>/instance-id`. A new data directory is a new instance.
"""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path
from typing import Final

from meshwarden.secure_files import ensure_private_dir, write_atomically

log = logging.getLogger(__name__)

FILE_NAME: Final = "instance-id"
_INSTANCE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def stable_instance_id(data_dir: Path, agent: str) -> str:
    path = data_dir / FILE_NAME
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        kept = ""
    if kept and _INSTANCE_ID.fullmatch(kept) and kept.startswith(f"{agent}-"):
        return kept
    if kept:
        log.warning("ignoring %s: %r is no instance id of agent %s; making a new one", path, kept, agent)
    made = f"{agent}-{secrets.token_hex(4)}"
    ensure_private_dir(data_dir)
    write_atomically(path, (made + "\n").encode())
    return made
