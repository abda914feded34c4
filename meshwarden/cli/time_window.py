"""`--since` and `--until` as people write them: an age ("90s", "15m", "1h", "2d") counted back
from now, or an RFC 3339 / ISO 8601 time ("2026-11-21T08:00Z", "2026-11-21T08:00:00+01:00";
no zone means UTC)."""

from __future__ import annotations

import datetime
import re
from typing import Final, Protocol

from google.protobuf import timestamp_pb2

_AGE: Final = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, *, now: float) -> float:
    """Seconds since the epoch; ValueError saying what is accepted."""
    text = text.strip()
    age = _AGE.fullmatch(text)
    if age:
        return now - float(age.group(1)) * _UNIT_S[age.group(2)]
    try:
        moment = datetime.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an age (90s, 15m, 1h, 2d) nor a time such as 2026-11-21T08:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def parse_duration(text: str) -> float:
    """An age ("90s", "15m", "1h", "2d") as seconds; ValueError saying what is accepted."""
    age = _AGE.fullmatch(text.strip())
    if not age or float(age.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration such as 90s, 15m, 1h or 2d")
    return float(age.group(1)) * _UNIT_S[age.group(2)]


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


class Windowed(Protocol):
    """A request with `since` and `until` timestamps (sessions, costs, changes)."""

    @property
    def since(self) -> timestamp_pb2.Timestamp: ...
    @property
    def until(self) -> timestamp_pb2.Timestamp: ...


def set_window(request: Windowed, *, since: str, until: str, now: float) -> None:
    """Fills the request's `since` and `until` from the flags given (empty: left unset);
    ValueError naming the flag."""
    for flag, text in (("since", since), ("until", until)):
        if text:
            try:
                getattr(request, flag).CopyFrom(timestamp(parse_time(text, now=now)))
            except ValueError as exc:
                raise ValueError(f"--{flag}: {exc}") from exc
