"""meshwarden.cli.agents_cmd and agents_list: JSON shape, table layout, flags."""

from __future__ import annotations

import argparse
import json

from meshwarden.cli import agents_cmd, agents_list
from meshwarden.v1 import catalog_pb2, session_insights_pb2

HASH = "sha256:" + "e" * 64
ISOLATED = catalog_pb2.InstanceHealth(
    instance_id="abc123def456",
    state=catalog_pb2.HEALTH_STATE_ISOLATED,
    reason="5 consecutive failures",
    reporters=2,
)


def test_instance_json_carries_the_reported_health_and_default_timeout() -> None:
    instance = _instance("billing", "abc123def456", ["billing.refund"], 1_700_000_005)
    instance.capabilities[0].default_timeout_ms = 2500
    isolated_at = catalog_pb2.InstanceHealth()
    isolated_at.CopyFrom(ISOLATED)
    isolated_at.updated_at.FromSeconds(1_700_000_000)
    data = agents_list.instance_json(instance, isolated_at)
    assert data["health"] == {
        "state": "ISOLATED",
        "reason": "5 consecutive failures",
        "reporters": 2,
        "updated_at": "2023-11-14T22:13:20Z",
    }
    assert data["capabilities"] == [
        {"name": "billing.refund", "schema_hash": HASH, "description": "", "default_timeout_ms": 2500}
    ]


def _instance(
    agent: str,
    instance_id: str,
    capabilities: list[str],
    expires_at_s: int,
    svid_expires_at_s: int = 0,
    *,
    enrolled: bool = True,
) -> catalog_pb2.Instance:
    message = catalog_pb2.Instance(
        instance_id=instance_id,
        agent=agent,
        version="1.4.0",
        peer_address="127.0.0.1:7411",
        capabilities=[catalog_pb2.Capability(name=name, schema_hash=HASH) for name in capabilities],
        spiffe_id=f"spiffe://mesh.local/agent/{agent}",
    )
    message.registered_at.FromSeconds(1_700_000_000)
    message.lease_expires_at.FromSeconds(expires_at_s)
    if svid_expires_at_s:
        message.svid_expires_at.FromSeconds(svid_expires_at_s)
    if enrolled:
        message.enrolment.how, message.enrolment.principal = "join_token", "operator:sha256:0123456789abcdef"
        message.enrolment.token_id, message.enrolment.claimed_user = "jt-5f1c", "ann"
        message.enrolment.enrolled_at.FromSeconds(1_699_999_990)
    return message


def test_instance_json_has_the_documented_keys() -> None:
    data = agents_list.instance_json(_instance("billing", "abc", ["billing.refund"], 1_700_000_005, 1_700_003_600))
    assert json.loads(json.dumps(data)) == {
        "agent": "billing",
        "version": "1.4.0",
        "instance_id": "abc",
        "peer_address": "127.0.0.1:7411",
        "spiffe_id": "spiffe://mesh.local/agent/billing",
        "capabilities": [
            {"name": "billing.refund", "schema_hash": HASH, "description": "", "default_timeout_ms": None}
        ],
        "registered_at": "2023-11-14T22:13:20Z",
        "lease_expires_at": "2023-11-14T22:13:25Z",
        "svid_expires_at": "2023-11-14T23:13:20Z",
        "health": {"state": "HEALTHY", "reason": "no reports", "reporters": 0, "updated_at": None},
        "enrolled_by": {
            "how": "join_token",
            "principal": "operator:sha256:0123456789abcdef",
            "token_id": "jt-5f1c",
            "claimed_user": "ann",
            "enrolled_at": "2023-11-14T22:13:10Z",
        },
        "agent_activity": {"sessions_running": 0, "tasks_running": 0},
    }
    bare = agents_list.instance_json(_instance("billing", "abc", [], 1_700_000_005, enrolled=False))
    assert bare["svid_expires_at"] is None
    # a registry that records no enrolment: said so, never blank
    assert bare["enrolled_by"] == {
        "how": "unrecorded",
        "principal": "unrecorded",
        "token_id": None,
        "claimed_user": None,
        "enrolled_at": None,
    }


def test_activity_is_the_agents_in_json_and_one_row_per_agent_in_the_table() -> None:
    busy = session_insights_pb2.AgentActivity(agent="billing", sessions_running=12, tasks_in_progress=3)
    instances = [_instance("billing", "b1", [], 1), _instance("billing", "b2", [], 1), _instance("kb", "k1", [], 1)]
    assert agents_list.instance_json(instances[0], None, busy)["agent_activity"] == {
        "sessions_running": 12,
        "tasks_running": 3,
    }
    lines = agents_list.render_activity(instances, {"billing": busy}).splitlines()
    assert [line.split() for line in lines] == [
        ["AGENT", "INSTANCES", "SESSIONS-RUNNING", "TASKS-RUNNING"],
        ["billing", "2", "12", "3"],
        ["kb", "1", "-", "-"],  # not answered: never shown as 0
    ]


def test_table_aligns_columns_and_joins_capabilities() -> None:
    table = agents_list.render_table(
        [
            _instance("billing", "abc123def456", ["billing.refund", "billing.quote"], 1_700_000_004, 1_700_003_599),
            _instance("search", "0123", [], 1_699_999_999, enrolled=False),
            _instance("kb", "4567", ["kb.search"], 1_700_000_004, 1_700_000_042),
        ],
        now=1_700_000_000.0,
        health={"abc123def456": ISOLATED},
    )
    header, first, second, third = table.splitlines()
    assert header.split() == [
        "AGENT",
        "VERSION",
        "INSTANCE",
        "HEALTH",
        "PEER",
        "CAPABILITIES",
        "LEASE-EXPIRES-IN",
        "SVID-EXPIRES-IN",
        "SPIFFE-ID",
        "ENROLLED-BY",
        "WHY",
    ]
    assert first.split() == [
        "billing",
        "1.4.0",
        "abc123def456",
        "ISOLATED",
        "127.0.0.1:7411",
        "billing.refund,billing.quote",
        "4.0s",
        "59m59s",
        "spiffe://mesh.local/agent/billing",
        "operator:sha256:0123456789abcdef",
        "(claims",
        "ann)",
        "5",
        "consecutive",
        "failures",
    ]
    assert second.split() == [
        "search",
        "1.4.0",
        "0123",
        "HEALTHY",
        "127.0.0.1:7411",
        "-",
        "expired",
        "-",
        "spiffe://mesh.local/agent/search",
        "unrecorded",
        "no",
        "reports",
    ]
    assert third.split()[7] == "42s"
    assert header.index("VERSION") == first.index("1.4.0") == second.index("1.4.0")


def test_add_to_registers_agents_list() -> None:
    parser = argparse.ArgumentParser()
    agents_cmd.add_to(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "agents",
            "list",
            "--output",
            "json",
            "--capability",
            "billing.refund",
            "--ca-pin",
            "sha256:ab",
            "--operator-token-file",
            "/tmp/t",
        ]
    )
    assert args.output == "json" and args.capability == "billing.refund" and args.registry is None
    assert args.ca_pin == "sha256:ab" and args.operator_token_file == "/tmp/t" and args.trust_bundle is None
    assert callable(args.run)
