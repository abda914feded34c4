"""policy_bundle.build: a bundle directory becomes an artifact, or every problem with file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshwarden.policy_bundle import artifact as fmt
from meshwarden.policy_bundle.build import build
from meshwarden.policy_bundle.errors import BundleInvalid
from meshwarden.policy_bundle.init import SCHEMA, entities_json
from tests.policy_helpers import write_bundle


def problems(directory: Path) -> list[str]:
    with pytest.raises(BundleInvalid) as info:
        build(directory)
    return [str(p) for p in info.value.problems]


def test_the_starting_bundle_builds(tmp_path: Path) -> None:
    built = build(write_bundle(tmp_path))
    assert built.contents.manifest.label == "bundle demo rev 1"
    assert {p.policy_id for p in built.policies} == {
        "low-and-medium-risk",
        "tier1-no-risk3",
        "refunds-by-support",
        "refunds-by-finance",
        "refunds-under-100-dollars",
    }
    assert [f.path for f in built.contents.policy_files] == [
        "policies/baseline.cedar",
        "policies/refunds.cedar",
        "policies/tiers.cedar",
    ]
    assert "README.md" not in built.artifact.files


def test_the_artifact_is_deterministic_and_digests_every_file(tmp_path: Path) -> None:
    directory = write_bundle(tmp_path)
    first, second = build(directory), build(directory)
    assert first.to_bytes() == second.to_bytes()
    document = json.loads(first.to_bytes())
    assert document["format"] == fmt.FORMAT and document["signatures"] == []
    assert set(document["digests"]) == set(document["files"])
    assert document["digests"]["entities.json"] == fmt.file_digest(entities_json())
    assert first.digest.startswith("sha256:")


def test_a_syntax_error_names_its_file_and_line(tmp_path: Path) -> None:
    broken = '// a comment\n@id("ok")\npermit (principal, action == Action::"call", resource);\n\n@id("bad")\npermit (principal, action == Action::"call", resource)\nwhen {\n  principal.tier >\n};\n'
    found = problems(write_bundle(tmp_path, {"policies/broken.cedar": broken}))
    assert found == ["policies/broken.cedar:9: Cedar syntax error: unexpected token `}`"]


def test_a_missing_semicolon_is_reported_at_the_end_of_the_policy(tmp_path: Path) -> None:
    found = problems(write_bundle(tmp_path, {"policies/x.cedar": '@id("x")\npermit (principal, action, resource)\n'}))
    assert found == ["policies/x.cedar:2: Cedar syntax error: unexpected end of input (a policy ends with `;`)"]


def test_semicolons_in_strings_and_comments_do_not_split_policies(tmp_path: Path) -> None:
    text = '@id("a") @reason("one; two") permit (principal, action == Action::"call", resource) // no; split\nwhen { principal.team == ";" };'
    built = build(write_bundle(tmp_path, {"policies/x.cedar": text}))
    assert "a" in {p.policy_id for p in built.policies}


def test_a_schema_violation_names_the_line_with_the_unknown_attribute(tmp_path: Path) -> None:
    text = '@id("typo")\npermit (principal, action == Action::"call", resource)\nwhen {\n  resource.risk_tier < 2 &&\n  principal.teir == 1\n};\n'
    found = problems(write_bundle(tmp_path, {"policies/typo.cedar": text}))
    assert found == [
        "policies/typo.cedar:5: does not match the schema: attribute `teir` on entity type `Agent` not found"
    ]


def test_a_type_error_against_the_schema_is_reported(tmp_path: Path) -> None:
    text = '@id("types")\npermit (principal, action == Action::"call", resource)\nwhen { principal.tier == "1" && resource.risk_tier < "x" };\n'
    found = problems(write_bundle(tmp_path, {"policies/types.cedar": text}))
    assert found and all(p.startswith("policies/types.cedar:") for p in found)


def test_unknown_actions_and_entity_types_are_schema_violations(tmp_path: Path) -> None:
    text = '@id("view")\npermit (principal, action == Action::"view", resource);\n@id("user")\npermit (principal == User::"x", action == Action::"call", resource);\n'
    found = problems(write_bundle(tmp_path, {"policies/other.cedar": text}))
    assert any(p.startswith("policies/other.cedar:2:") for p in found)
    assert any(p.startswith("policies/other.cedar:4:") for p in found)


def test_duplicate_ids_name_both_places(tmp_path: Path) -> None:
    text = '@id("tier1-no-risk3")\npermit (principal, action == Action::"call", resource);\n'
    found = problems(write_bundle(tmp_path, {"policies/zz.cedar": text}))
    assert found == [
        'policies/zz.cedar:1: duplicate @id("tier1-no-risk3"): also at policies/tiers.cedar:2; ids must be unique in a bundle'
    ]


def test_every_policy_needs_an_id(tmp_path: Path) -> None:
    text = '@id("fine")\npermit (principal, action == Action::"call", resource);\n\npermit (principal, action == Action::"call", resource);\n'
    found = problems(write_bundle(tmp_path, {"policies/ids.cedar": text}))
    assert found == [
        'policies/ids.cedar:4: policy has no @id("..."): every policy needs an id, unique in the bundle (decisions and receipts name it)'
    ]


def test_ids_must_be_printable_names_and_reasons_not_empty(tmp_path: Path) -> None:
    text = '@id("two words")\npermit (principal, action == Action::"call", resource);\n@id("x") @reason(" ")\npermit (principal, action == Action::"call", resource);\n'
    found = problems(write_bundle(tmp_path, {"policies/ids.cedar": text}))
    assert found[0].startswith("policies/ids.cedar:1: @id 'two words' must be")
    assert found[1].startswith('policies/ids.cedar:3: @reason of policy "x" is empty')


def test_templates_are_refused(tmp_path: Path) -> None:
    text = '@id("t")\npermit (principal == ?principal, action == Action::"call", resource);\n'
    found = problems(write_bundle(tmp_path, {"policies/t.cedar": text}))
    assert found == [
        "policies/t.cedar:1: templates (?principal, ?resource) are not supported in bundles: name the entity instead of the slot"
    ]


def test_missing_files_are_reported(tmp_path: Path) -> None:
    found = problems(
        write_bundle(
            tmp_path,
            {
                "entities.json": None,
                "policies/baseline.cedar": None,
                "policies/tiers.cedar": None,
                "policies/refunds.cedar": None,
            },
        )
    )
    assert found == [
        "entities.json:1: missing: every bundle has entities.json (see `meshwarden bundle init`)",
        "policies:1: no policies/*.cedar files: a bundle without policies denies every call",
    ]


def test_schema_errors_point_at_the_line(tmp_path: Path) -> None:
    unresolved = SCHEMA.replace("  tier: Long,", "  tier: Lnog,")
    line = unresolved.splitlines().index(next(x for x in unresolved.splitlines() if "Lnog" in x)) + 1
    assert problems(write_bundle(tmp_path / "a", {"schema.cedarschema": unresolved})) == [
        f"schema.cedarschema:{line}: Cedar schema error: failed to resolve type: Lnog"
    ]
    syntax = SCHEMA.replace("side_effects: Bool,", "side_effects: Bool;")
    line = syntax.splitlines().index(next(x for x in syntax.splitlines() if "Bool;" in x)) + 1
    assert problems(write_bundle(tmp_path / "b", {"schema.cedarschema": syntax})) == [
        f"schema.cedarschema:{line}: Cedar schema error: error parsing schema: unexpected token `;`"
    ]


def test_the_schema_must_follow_the_mesh_model(tmp_path: Path) -> None:
    schema = (
        SCHEMA.replace("session_id: String,", "session_id: Long,")
        .replace("cost_estimate_micro_usd?: Long", "cost_estimate_micro_usd: Long, mood: String")
        .replace("query?: String,", "query?: String, at?: datetime,")
        .replace("resource: [Capability],", "resource: [Capability, Agent],")
    )
    found = problems(write_bundle(tmp_path, {"schema.cedarschema": schema}))
    messages = [p.split(": ", 1)[1] for p in found]
    assert 'action "call" must apply to resource [Capability] only' in messages
    assert "context.session_id must be String" in messages
    assert any(m.startswith("declare context.cost_estimate_micro_usd optional") for m in messages)
    assert any(m.startswith("context.mood is not provided by meshwarden sidecars") for m in messages)
    assert any(m.startswith("context.args.at is declared as datetime") for m in messages)


def test_entity_problems_name_the_entity_and_its_line(tmp_path: Path) -> None:
    entities = json.loads(entities_json())
    entities[3]["attrs"]["tier"] = "2"  # Agent::"kb" (three teams come first)
    entities[4]["attrs"]["colour"] = "blue"  # Agent::"billing"
    entities[5]["parents"] = [{"type": "Capability", "id": "kb.search"}]  # Agent::"support"
    text = json.dumps(entities, indent=2)
    found = problems(write_bundle(tmp_path, {"entities.json": text}))
    starts = [number for number, line in enumerate(text.splitlines(), start=1) if line == "  {"]
    assert found == [
        f"entities.json:{starts[3]}: Agent::\"kb\": attrs.tier is '2', the schema declares Long",
        f'entities.json:{starts[4]}: Agent::"billing": attrs.colour is not declared in the schema',
        f'entities.json:{starts[5]}: Agent::"support": parent of type Capability is not allowed: Agent may be in Team',
    ]


def test_entity_names_must_be_able_to_match_the_mesh(tmp_path: Path) -> None:
    entities = json.loads(entities_json())
    entities[3]["uid"]["id"] = "KB"  # Agent::"kb"
    entities[4]["attrs"]["spiffe_id"] = "spiffe://meshwarden.local/agent/kb"  # on Agent::"billing"
    entities[9]["attrs"]["kind"] = "robot"  # Capability::"billing.refund"
    found = problems(write_bundle(tmp_path, {"entities.json": json.dumps(entities, indent=2)}))
    messages = [p.split(": ", 1)[1] for p in found]
    assert any(m.startswith("Agent::\"KB\": agent name 'KB' can never match an agent") for m in messages)
    assert any("spiffe_id 'spiffe://meshwarden.local/agent/kb' names another agent" in m for m in messages)
    assert any("kind must be one of capability, tool, got 'robot'" in m for m in messages)


def test_entities_json_must_be_json(tmp_path: Path) -> None:
    assert problems(write_bundle(tmp_path, {"entities.json": '[\n  {"uid": \n'})) == [
        "entities.json:3: not valid JSON: Expecting value"
    ]


def test_all_problems_are_reported_at_once_in_file_order(tmp_path: Path) -> None:
    found = problems(
        write_bundle(
            tmp_path,
            {
                "manifest.toml": 'name = "demo"\nrevision = 0\n',
                "policies/a.cedar": "permit (principal, action, resource);\n",
                "policies/b.cedar": '@id("b")\nforbid (principal, action == Action::"call", resource) when { principal.nope };\n',
            },
        )
    )
    assert [p.split(":")[0] for p in found] == ["manifest.toml", "policies/a.cedar", "policies/b.cedar"]


def test_approval_on_a_forbid_is_refused_at_build_naming_the_policy(tmp_path: Path) -> None:
    text = '@id("no-refunds")\n@approval("big")\nforbid (principal, action, resource);\n'
    found = problems(write_bundle(tmp_path, {"policies/approvals.cedar": text}))
    assert any("no-refunds" in p and "@approval belongs on a permit policy" in p for p in found), found
