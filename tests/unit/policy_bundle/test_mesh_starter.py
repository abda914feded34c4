"""A starting bundle for the user's own mesh builds, and adding to it keeps what people edited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshwarden.policy_bundle.build import build
from meshwarden.policy_bundle.manifest import with_revision
from meshwarden.policy_bundle.mesh_starter import MeshInventory, merged_entities, starter_files

MESH = MeshInventory({"echo": frozenset({"echo", "echo.twice"}), "ops": frozenset()})


def write(directory: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_text(text)


def test_the_starter_describes_every_agent_and_capability_and_builds(tmp_path: Path) -> None:
    write(tmp_path, starter_files(MESH, "example.org"))
    built = build(tmp_path)
    entities = json.loads(built.contents.entities_text)
    uids = {(e["uid"]["type"], e["uid"]["id"]) for e in entities}
    assert {("Agent", "echo"), ("Agent", "ops"), ("Capability", "echo"), ("Capability", "echo.twice")} <= uids
    ops = next(e for e in entities if e["uid"] == {"type": "Agent", "id": "ops"})
    assert ops["attrs"]["spiffe_id"] == "spiffe://example.org/agent/ops"
    assert {p.policy_id for p in built.policies} == {"low-and-medium-risk", "tier1-no-risk3"}


def test_merging_adds_only_what_is_missing_and_keeps_edits() -> None:
    edited = {"uid": {"type": "Capability", "id": "echo"}, "attrs": {"owner": "x", "risk_tier": 3}, "parents": []}
    merged, added = merged_entities([edited], MESH, "example.org")
    assert merged[0] is edited and 'Capability::"echo"' not in added
    assert 'Capability::"echo.twice"' in added and 'Agent::"ops"' in added
    assert merged_entities(merged, MESH, "example.org")[1] == []


def test_build_can_set_the_revision_without_touching_the_directory(tmp_path: Path) -> None:
    write(tmp_path, starter_files(MESH, "example.org"))
    assert build(tmp_path, revision=42).contents.manifest.revision == 42
    assert "revision = 1" in (tmp_path / "manifest.toml").read_text()


def test_a_manifest_without_a_revision_line_cannot_be_given_one() -> None:
    with pytest.raises(ValueError, match="no `revision = N` line"):
        with_revision('name = "x"\n', 2)
    assert (
        with_revision('name = "x"\nrevision = 7\n# revision = 9\n', 8) == 'name = "x"\nrevision = 8\n# revision = 9\n'
    )
