"""Cedar on MCP tool calls: Action::"CallTool" on Tool::"server.tool" with its risk, the
validated arguments, session and team; default deny; what tools/list shows."""

from __future__ import annotations

import json
from pathlib import Path

from meshwarden.policy_bundle.init import SCHEMA
from meshwarden.sidecar.policy import ActivePolicy, Caller, CallFacts
from tests.policy_helpers import verified
from tests.unit.policy_bundle.test_mcp_servers import SERVERS, TOOL_SCHEMA

FACTS = CallFacts(now_unix_s=1_763_700_000, session_id="s-1")
POLICIES = """
@id("read-tools")
@reason("reading is fine")
permit (principal, action == Action::"CallTool", resource) when { resource.risk == "read" };

@id("close-small-tickets")
permit (principal, action == Action::"CallTool", resource == Tool::"desk.close_ticket")
when { context.args has ticket_id && context.args.ticket_id < 100 };

@id("no-tools-in-session-x")
@reason("session x is quarantined")
forbid (principal, action == Action::"CallTool", resource) when { context.session_id == "x" };
"""


def engine(tmp_path: Path) -> ActivePolicy:
    bundle = verified(
        tmp_path,
        {
            "mcp_servers.toml": SERVERS,
            "schema.cedarschema": SCHEMA + TOOL_SCHEMA,
            "policies/tools.cedar": POLICIES,
        },
    )
    return ActivePolicy(bundle, local_agent="support", local_capabilities=[])


def test_cedar_decides_on_risk_arguments_and_session(tmp_path: Path) -> None:
    policy = engine(tmp_path)
    caller = Caller("support")
    read = policy.mcp_servers.tool("tickets.read_ticket")
    close = policy.mcp_servers.tool("desk.close_ticket")
    assert read is not None and close is not None
    assert policy.decide_tool(caller, read, b'{"ticket_id": 1}', FACTS).allowed
    assert policy.decide_tool(caller, close, json.dumps({"ticket_id": 5}).encode(), FACTS).allowed
    big = policy.decide_tool(caller, close, json.dumps({"ticket_id": 500}).encode(), FACTS)
    assert not big.allowed and "no policy permits support to call desk.close_ticket" in big.reason
    quarantined = policy.decide_tool(caller, read, b"{}", CallFacts(now_unix_s=1, session_id="x"))
    assert not quarantined.allowed and quarantined.policy_ids == ("no-tools-in-session-x",)


def test_tools_list_shows_what_some_call_may_be_permitted(tmp_path: Path) -> None:
    policy = engine(tmp_path)
    caller = Caller("support")
    read, close = policy.mcp_servers.tool("tickets.read_ticket"), policy.mcp_servers.tool("desk.close_ticket")
    assert read is not None and close is not None
    assert policy.tool_visible(caller, read, FACTS)
    assert policy.tool_visible(caller, close, FACTS)  # depends on the arguments: listed, decided per call
    assert not policy.tool_visible(caller, read, CallFacts(now_unix_s=1, session_id="x"))


def test_capability_policies_do_not_leak_into_tool_decisions(tmp_path: Path) -> None:
    bundle = verified(
        tmp_path,
        {
            "mcp_servers.toml": SERVERS,
            "schema.cedarschema": SCHEMA + TOOL_SCHEMA,
            "policies/tools.cedar": '@id("calls")\npermit (principal, action == Action::"call", resource);\n',
        },
    )
    policy = ActivePolicy(bundle, local_agent="support", local_capabilities=[])
    read = policy.mcp_servers.tool("tickets.read_ticket")
    assert read is not None
    assert not policy.decide_tool(Caller("support"), read, b"{}", FACTS).allowed  # default deny


def test_a_permit_with_approval_holds_a_tool_call_for_a_person(tmp_path: Path) -> None:
    approval = """
@id("close-with-approval")
@approval("closes a ticket for good")
@approval_ttl_s("60")
permit (principal, action == Action::"CallTool", resource == Tool::"desk.close_ticket")
when { context.args has ticket_id && context.args.ticket_id >= 100 };
"""
    bundle = verified(
        tmp_path,
        {
            "mcp_servers.toml": SERVERS,
            "schema.cedarschema": SCHEMA + TOOL_SCHEMA,
            "policies/tools.cedar": POLICIES + approval,
        },
    )
    policy = ActivePolicy(bundle, local_agent="support", local_capabilities=[])
    close = policy.mcp_servers.tool("desk.close_ticket")
    assert close is not None
    big = policy.decide_tool(Caller("support"), close, b'{"ticket_id": 500}', FACTS)
    assert big.allowed and big.approval_risks == ("closes a ticket for good",) and big.approval_ttl_s == 60
    small = policy.decide_tool(Caller("support"), close, b'{"ticket_id": 5}', FACTS)
    assert small.allowed and small.approval_risks == ()  # a plain permit decided it


def test_kept_decisions_are_the_ones_cedar_gives(tmp_path: Path) -> None:
    """The memo keys on the exact context Cedar would see: another argument, session or tool
    is decided anew, a repeat is answered from the memo, and both agree with no memo at all."""
    bundle = verified(
        tmp_path,
        {"mcp_servers.toml": SERVERS, "schema.cedarschema": SCHEMA + TOOL_SCHEMA, "policies/tools.cedar": POLICIES},
    )
    kept = ActivePolicy(bundle, local_agent="support", local_capabilities=[])
    fresh = ActivePolicy(bundle, local_agent="support", local_capabilities=[], decision_cache_size=0)
    read, close = kept.mcp_servers.tool("tickets.read_ticket"), kept.mcp_servers.tool("desk.close_ticket")
    assert read is not None and close is not None
    calls = [
        (read, b'{"ticket_id": 1}', FACTS),
        (close, b'{"ticket_id": 5}', FACTS),
        (close, b'{"ticket_id": 500}', FACTS),
        (read, b'{"ticket_id": 1}', CallFacts(now_unix_s=1, session_id="x")),
    ]
    for _ in range(2):
        for tool, args, facts in calls:
            assert kept.decide_tool(Caller("support"), tool, args, facts) == fresh.decide_tool(
                Caller("support"), tool, args, facts
            )
    assert [kept.decide_tool(Caller("support"), t, a, f).allowed for t, a, f in calls] == [True, True, False, False]
    assert kept.decision_cache_entries == 4  # one per distinct (tool, context); the repeats added none
    assert fresh.decision_cache_entries == 0
