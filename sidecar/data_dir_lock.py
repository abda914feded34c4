"""One sidecar per data directory, enforced with an exclusive lock held while it runs.

The data directory holds the sidecar's identity, its instance id and its receipt chain; two
sidecars sharing one (two sidecars of the same agent on one host, both without --data-dir)
would present the same instance and fork one chain, which the registry then refuses. The
second one is refused at start instead, with what to do. The lock is an flock on
`<data-dir>/sidecar.lock`, released by the kernel when the process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Final, TextIO

from meshwarden.private_data import tighten_dir

LOCK_NAME: Final = "sidecar.lock"


class DataDirInUse(Exception):
    """Another sidecar holds the data directory; the message says how to run this one."""


def acquire(data_dir: Path, agent: str) -> TextIO:
    """Locks `data_dir` for this process (keep the returned file open while running)."""
    try:
        tighten_dir(data_dir)
        handle = (data_dir / LOCK_NAME).open("a+")
    except OSError as exc:
        raise DataDirInUse(f"cannot use the data directory {data_dir}: {exc.strerror}") from exc
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise DataDirInUse(
            f"the data directory {data_dir} is in use by another sidecar (pid {holder}): two sidecars cannot share "
            f"one (same identity, instance id and receipt chain). Give this one its own, e.g. --data-dir "
            f".meshwarden/sidecars/{agent}-2, or stop the other"
        ) from exc
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
