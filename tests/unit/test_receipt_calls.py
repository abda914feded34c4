"""Calls out of receipts: each call once, whichever sidecars' receipts are stored."""

from __future__ import annotations

from meshwarden.receipt_calls import calls_of
from meshwarden.usage import Usage
from tests.unit.receipt_fixtures import both_sides, receipt

GPT = ("gpt-4o", 1000, 200, 7000)


def test_a_call_recorded_by_both_sidecars_is_one_call_with_its_usage_counted_once() -> None:
    [call] = calls_of(both_sides("c1", "frontdesk", "billing", "billing.refund", usage=GPT))
    assert call.usage == Usage(*GPT) and call.cost_micro_usd == 7000
    assert call.sides == ("outbound", "inbound")
    assert (call.caller_team, call.callee_team) == ("support", "finance")


def test_every_delivery_that_ran_the_agent_counts_and_the_caller_side_is_not_added() -> None:
    receipts = [
        receipt("outbound", "c1", "frontdesk", "billing", "b", attempt=2, usage=GPT),
        receipt("inbound", "c1", "frontdesk", "billing", "b", attempt=1, usage=("gpt-4o", 10, 1, 100)),
        receipt("inbound", "c1", "frontdesk", "billing", "b", attempt=2, usage=GPT),
    ]
    [call] = calls_of(receipts)
    assert call.cost_micro_usd == 7100 and call.attempt == 2


def test_the_caller_side_usage_stands_in_until_the_callee_receipt_arrives() -> None:
    [call] = calls_of([receipt("outbound", "c1", "frontdesk", "billing", "b", usage=GPT)])
    assert call.cost_micro_usd == 7000 and call.sides == ("outbound",)


def test_a_callee_denial_shows_even_when_the_caller_allowed() -> None:
    receipts = [
        receipt("outbound", "c1", "a", "b", "x", status="PERMISSION_DENIED"),
        receipt("inbound", "c1", "a", "b", "x", decision="deny", status="PERMISSION_DENIED"),
    ]
    [call] = calls_of(receipts)
    assert call.policy_decision == "deny" and call.status == "PERMISSION_DENIED" and call.usage is None


def test_calls_come_in_the_order_they_started() -> None:
    receipts = [*both_sides("late", "a", "b", "x", at=1002.0), *both_sides("early", "a", "b", "x", at=1001.0)]
    assert [c.call_id for c in calls_of(receipts)] == ["early", "late"]


def test_a_model_call_is_measured_by_the_gateway_and_spent_by_its_caller() -> None:
    model_call = receipt("outbound", "m1", "support", "", "gpt-4o", usage=GPT)
    model_call.call_kind, model_call.model_provider = "model", "openai"
    [call] = calls_of([model_call])
    assert (call.call_kind, call.usage_measured_by, call.model_provider) == ("model", "gateway", "openai")
    assert (call.spender_agent, call.spender_team) == ("support", call.caller_team)
    [reported] = calls_of([receipt("outbound", "c1", "frontdesk", "billing", "b", usage=GPT)])
    assert (reported.usage_measured_by, reported.spender_agent) == ("agent", "billing")


def test_a_priced_tool_call_is_spent_by_its_caller_at_the_bundles_price() -> None:
    tool_call = receipt("outbound", "t1", "support", "", "tickets.refund", usage=("", 0, 0, 250))
    tool_call.call_kind, tool_call.tool_server, tool_call.tool_name = "tool", "tickets", "refund"
    [call] = calls_of([tool_call])
    assert (call.usage_measured_by, call.spender_agent, call.cost_micro_usd) == ("gateway", "support", 250)
