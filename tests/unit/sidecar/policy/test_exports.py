"""sidecar.policy exports exactly the names in __all__, and each one exists."""

from __future__ import annotations

import sidecar.policy


def test_every_exported_name_exists() -> None:
    assert [name for name in sidecar.policy.__all__ if not hasattr(sidecar.policy, name)] == []
    assert {"ActivePolicy", "Decision", "Direction", "Caller", "CallFacts", "ArgumentsNotMappable"} <= set(
        sidecar.policy.__all__
    )
