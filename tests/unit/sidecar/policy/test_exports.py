"""sidecar.policy exports exactly the names in __all__, and each one exists."""

from __future__ import annotations

from meshwarden.sidecar import policy


def test_every_exported_name_exists() -> None:
    assert [name for name in policy.__all__ if not hasattr(policy, name)] == []
    assert {"ActivePolicy", "Decision", "Direction", "Caller", "CallFacts", "ArgumentsNotMappable"} <= set(
        policy.__all__
    )
