"""Time, injected: stages and the registry read time only through a Clock (tests pass a fake)."""

from __future__ import annotations

import datetime
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; for deadlines and intervals."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch; for timestamps people read and leases stored on disk."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


def iso_utc(seconds: float) -> str:
    """An epoch timestamp as RFC 3339 UTC, for logs and tables people read."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds")
