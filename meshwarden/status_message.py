"""A gRPC status message that fits: gRPC carries it percent-encoded in the `grpc-message`
trailer, and trailers over the peer's metadata limit (8 KiB by default) make the whole status
vanish; the caller then sees "Stream removed" instead of the error (issue 14). So every
message an edge sends is cut to a size that fits even fully percent-encoded, saying so."""

from __future__ import annotations

from typing import Final

MAX_STATUS_MESSAGE_BYTES: Final = 1000  # x3 percent-encoded, plus the rich status's copy: under 8 KiB
_CUT: Final = " ... (message cut)"


def fit(message: str) -> str:
    """`message`, or its start with a note that it was cut, within MAX_STATUS_MESSAGE_BYTES (UTF-8)."""
    encoded = message.encode()
    if len(encoded) <= MAX_STATUS_MESSAGE_BYTES:
        return message
    room = MAX_STATUS_MESSAGE_BYTES - len(_CUT)
    return encoded[:room].decode(errors="ignore") + _CUT
