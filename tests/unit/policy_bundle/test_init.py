"""policy_bundle.init: a commented starting bundle for the demo mesh that builds as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshwarden.policy_bundle.build import build
from meshwarden.policy_bundle.init import DirectoryNotEmpty, init


def test_init_writes_a_bundle_that_builds(tmp_path: Path) -> None:
    written = init(tmp_path / "bundle")
    assert {p.relative_to(tmp_path / "bundle").as_posix() for p in written} == {
        "manifest.toml",
        "schema.cedarschema",
        "entities.json",
        "policies/baseline.cedar",
        "policies/tiers.cedar",
        "policies/refunds.cedar",
        "README.md",
    }
    built = build(tmp_path / "bundle")
    assert built.contents.manifest.name == "demo"


def test_the_demo_mesh_is_described(tmp_path: Path) -> None:
    init(tmp_path)
    entities = json.loads((tmp_path / "entities.json").read_text())
    names = {(e["uid"]["type"], e["uid"]["id"]) for e in entities}
    assert {("Agent", a) for a in ("kb", "billing", "support", "frontdesk")} <= names
    assert {("Capability", c) for c in ("kb.search", "billing.refund", "support.resolve_ticket")} <= names
    assert "//" in (tmp_path / "schema.cedarschema").read_text()  # commented for whoever starts from it


def test_init_never_writes_over_a_directory_with_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DirectoryNotEmpty, match="is not empty"):
        init(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
