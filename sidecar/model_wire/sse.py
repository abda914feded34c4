"""Server-sent events framing (the HTML standard's text/event-stream): events end with a blank
line; an event's data is its `data:` lines joined by newlines. Both providers stream this way."""

from __future__ import annotations

from typing import Final

MAX_EVENT_BYTES: Final = 16 * 1024 * 1024  # one event larger than this is a broken stream


class SseSplitter:
    """Cuts a byte stream into whole events (each with its blank-line terminator, normalised
    to "\\n\\n"), keeping a partial event until the rest arrives."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._buffer + chunk.replace(b"\r\n", b"\n")
        events = data.split(b"\n\n")
        self._buffer = events.pop()
        if len(self._buffer) > MAX_EVENT_BYTES:
            raise ValueError(f"a server-sent event over {MAX_EVENT_BYTES} bytes")
        return [event + b"\n\n" for event in events if event.strip()]

    @property
    def rest(self) -> bytes:
        """What came after the last complete event (a stream cut mid-event)."""
        return self._buffer


def event_data(event: bytes) -> bytes:
    """The data of one event ("" when it has none, as for comments and pings)."""
    lines = [line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines)
