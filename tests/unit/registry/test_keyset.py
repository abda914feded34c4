"""Keyset cursors: what the registry gives back is what it takes; anything else is refused."""

from __future__ import annotations

import pytest

from meshwarden.registry import keyset
from meshwarden.registry.errors import InvalidInput


def test_a_cursor_round_trips_with_its_types() -> None:
    assert keyset.decode(keyset.encode(1733500000.25, "ap-1"), float, str) == (1733500000.25, "ap-1")
    assert keyset.decode(keyset.encode(41), int) == (41,)


@pytest.mark.parametrize("text", ["", "nope", "[1]", '["a", "b"]', '[true, "x"]', "[1, 2]", "[" + "1," * 400 + "1]"])
def test_a_cursor_the_registry_did_not_give_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        keyset.decode(text, float, str)
    assert info.value.field == "cursor"
