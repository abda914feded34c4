"""Each package's public names are declared in __all__, and every declared name exists."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "package", ["meshwarden", "meshwarden.sidecar", "meshwarden.registry", "meshwarden.policy_bundle"]
)
def test_all_names_exist(package: str) -> None:
    module = importlib.import_module(package)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{package} must declare __all__"
    missing = [name for name in exported if not hasattr(module, name)]
    assert missing == []


def test_sdk_surface() -> None:
    import meshwarden

    assert {"Agent", "Client", "SyncClient", "CallContext", "HandlerError", "MeshError"} <= set(meshwarden.__all__)
