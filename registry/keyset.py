"""Keyset cursors for the registry's lists: a page ends with the sort key of its last row, and
the next page starts strictly after it, so rows written meanwhile neither repeat nor vanish
(unlike offsets). The cursor is opaque to clients: JSON of the key, checked when it comes back.
"""

from __future__ import annotations

import json
from typing import Final

from meshwarden.registry.errors import InvalidInput

MAX_CURSOR_CHARS: Final = 600


def encode(*key: float | int | str) -> str:
    return json.dumps(list(key), separators=(",", ":"))


def decode(text: str, *types: type) -> tuple[float | int | str, ...]:
    """The key `encode` made, each part of the type given; InvalidInput when it is not one."""
    try:
        if len(text) > MAX_CURSOR_CHARS:
            raise ValueError(text)
        parts = json.loads(text)
        if not isinstance(parts, list) or len(parts) != len(types):
            raise ValueError(text)
        for kind, part in zip(types, parts, strict=True):
            if not isinstance(part, kind) and not (kind is float and isinstance(part, int)) or isinstance(part, bool):
                raise ValueError(text)
        return tuple(kind(part) for kind, part in zip(types, parts, strict=True))
    except (ValueError, TypeError):
        raise InvalidInput("cursor", "is not one this registry gave; pass the page's next_cursor unchanged") from None
