"""Keyset cursors for the registry's lists: a page ends with the sort key of its last row, and
the next page starts strictly after it, so rows written meanwhile neither repeat nor vanish
(unlike offsets). The cursor is opaque to clients: JSON of the key, checked when it comes back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Final, TypeVar

from meshwarden.registry.errors import InvalidInput

MAX_CURSOR_CHARS: Final = 600
# The largest page of a list the registry holds whole (`page`), as ListInstances.
MAX_PAGE: Final = 10_000

T = TypeVar("T")


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


def page(
    rows: Iterable[T],
    key: Callable[[T], tuple[float | int | str, ...]],
    types: tuple[type, ...],
    cursor: str,
    limit: int,
    most: int,
) -> tuple[list[T], str]:
    """Rows sorted by `key` (its parts of `types`), the `limit` (0: all) after `cursor`, and the
    cursor after them ("" at the end). For the lists the registry holds whole (kill switches,
    isolations, routes, budgets): paging bounds the answer, not the work. InvalidInput for a
    limit past `most` or a cursor this registry did not give."""
    if limit > most:
        raise InvalidInput("limit", f"is {limit}; at most {most} per page (0: all)")
    after = decode(cursor, *types) if cursor else None
    listed = [r for r in sorted(rows, key=key) if after is None or key(r) > after]
    found = listed[:limit] if limit else listed
    return found, encode(*key(found[-1])) if len(found) < len(listed) else ""
