"""What `meshwarden kill`, `isolate` and `audit` share: durations people type, times people
read, and the line that says how far a change has spread."""

from __future__ import annotations

import re
from typing import Final

from google.protobuf.timestamp_pb2 import Timestamp

from meshwarden.clock import iso_utc
from meshwarden.control_scopes import ScopeError
from meshwarden.v1 import controls_pb2

_UNITS: Final = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")


def parse_duration(text: str, flag: str) -> float:
    """'90', '30s', '10m', '2h', '1d' -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise ScopeError(f"{flag} {text!r} must be a positive duration such as 30s, 10m, 2h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def when(stamp: Timestamp) -> str:
    return iso_utc(stamp.ToMicroseconds() / 1e6)


def enforcement_line(e: controls_pb2.Enforcement) -> str:
    """'enforced by 100/100 sidecars in 38 ms', and which did not when some did not."""
    took_ms = e.took.ToMicroseconds() / 1000
    line = f"enforced by {e.enforced}/{e.expected} sidecars in {took_ms:.0f} ms"
    if e.not_acknowledged:
        shown = ", ".join(e.not_acknowledged[:10]) + (" ..." if len(e.not_acknowledged) > 10 else "")
        line += (
            f"; not acknowledged yet: {shown} (a sidecar cut off from the registry applies it first when it reconnects)"
        )
    return line
