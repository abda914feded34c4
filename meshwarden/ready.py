"""The ready line: one JSON object on stdout once a server listens, naming its real addresses.

Servers may bind port 0; supervisors (the demo, the test fixtures, scripts) read this line to
learn the ports actually bound instead of racing to pick free ones.
"""

from __future__ import annotations

import json
import sys


def announce_ready(component: str, **addresses: str) -> None:
    line = json.dumps({"event": "ready", "component": component, **addresses}, separators=(",", ":"))
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def parse_ready(line: str) -> dict[str, str] | None:
    """The addresses of a ready line, or None when `line` is something else."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("event") != "ready":
        return None
    return {str(k): str(v) for k, v in data.items()}
