"""`meshwarden policy explain` on the starting bundle, offline: which policies decide and why,
with the exit code saying allow (0), deny (1) or bad input (2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshwarden.cli.main import main
from meshwarden.policy_bundle.build import build
from meshwarden.policy_bundle.init import init

REFUND = '{"customer_id": "C1", "amount_cents": 500}'


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo")
    init(directory)
    return directory


def explain(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["policy", "explain", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_forbid_names_itself_its_file_and_reason(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = explain(
        capsys, str(demo), "--caller", "frontdesk", "--capability", "billing.refund", "--args", REFUND
    )
    assert code == 1
    assert out.splitlines()[0] == "DENY: frontdesk -> billing.refund under bundle demo rev 1"
    assert "forbid  tier1-no-risk3  (policies/tiers.cedar:2)  agents of tier 1 may not call" in out


def test_a_permit_is_explained_in_json(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = explain(
        capsys, str(demo), "--caller", "support", "--capability", "billing.refund", "--args", REFUND, "--output", "json"
    )
    explained = json.loads(out)
    assert code == 0 and explained["allowed"] is True
    assert [p["id"] for p in explained["deciding_policies"]] == ["refunds-by-support"]
    assert explained["deciding_policies"][0]["file"] == "policies/refunds.cedar"


def test_the_arguments_decide_too(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = '{"customer_id": "C1", "amount_cents": 20000}'
    code, out, _ = explain(capsys, str(demo), "--caller", "support", "--capability", "billing.refund", "--args", big)
    assert code == 1 and "refunds-under-100-dollars" in out


def test_a_built_artifact_and_nothing_permitting(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifact = tmp_path / "demo.bundle.json"
    artifact.write_bytes(build(demo).to_bytes())
    code, out, _ = explain(capsys, str(artifact), "--caller", "nobody", "--capability", "weather.today")
    assert code == 1 and "decided by: no policy" in out


def test_bad_arguments_are_bad_input(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = explain(
        capsys, str(demo), "--caller", "support", "--capability", "billing.refund", "--args", '{"amount_cents": 1.5}'
    )
    assert code == 2 and "bad payload" in err
    code, _, err = explain(capsys, str(demo), "--caller", "support", "--capability", "billing.refund", "--args", "{")
    assert code == 2 and "--args is not JSON" in err


def test_an_mcp_tool_call_is_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.integration.bundles import TOOL_SCHEMA

    init(tmp_path)
    (tmp_path / "schema.cedarschema").write_text((tmp_path / "schema.cedarschema").read_text() + TOOL_SCHEMA)
    schema_hash = "ab" * 32
    (tmp_path / "mcp_servers.toml").write_text(
        '[servers.tickets]\nurl = "https://tickets.internal/mcp"\n'
        f'[servers.tickets.tools.read_ticket]\nrisk = "read"\ninput_schema_sha256 = "{schema_hash}"\n'
        f'[servers.tickets.tools.close_ticket]\nrisk = "destructive"\ninput_schema_sha256 = "{schema_hash}"\n'
    )
    (tmp_path / "policies" / "tools.cedar").write_text(
        '@id("read-tools")\n@reason("any agent may use tools that only read")\n'
        'permit (principal, action == Action::"CallTool", resource) when { resource.risk == "read" };\n'
    )
    code, out, _ = explain(capsys, str(tmp_path), "--caller", "support", "--tool", "tickets.read_ticket")
    assert code == 0 and "read-tools" in out and "tool tickets.read_ticket" in out
    code, out, _ = explain(capsys, str(tmp_path), "--caller", "support", "--tool", "tickets.close_ticket")
    assert code == 1 and "decided by: no policy" in out
    code, _, err = explain(capsys, str(tmp_path), "--caller", "support", "--tool", "tickets.delete_all")
    assert code == 2 and "declares no tool tickets.delete_all" in err and "tickets.read_ticket" in err


def test_a_model_call_is_explained_with_its_worst_case_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init(tmp_path, models=True)
    code, out, _ = explain(capsys, str(tmp_path), "--caller", "support", "--model", "gpt-4o-mini")
    assert code == 0 and "models-within-call-cost" in out and "model gpt-4o-mini" in out
    code, out, _ = explain(capsys, str(tmp_path), "--caller", "frontdesk", "--model", "gpt-4o", "--output", "json")
    decided = json.loads(out)
    assert code == 1 and not decided["allowed"]
    assert [p["id"] for p in decided["deciding_policies"]] == ["tier1-small-models-only"]
    # A huge output cap makes the worst case cost more than the permit allows: default deny.
    code, out, _ = explain(
        capsys, str(tmp_path), "--caller", "support", "--model", "gpt-4o", "--max-tokens", "10000000"
    )
    assert code == 1 and "decided by: no policy" in out
    code, _, err = explain(capsys, str(tmp_path), "--caller", "support", "--model", "gpt-5-ultra")
    assert code == 2 and "declares no model gpt-5-ultra" in err and "gpt-4o-mini" in err
