"""Usage as a handler reports it: validated where it is written, kept in integer micro-dollars,
and added up when a call reports more than once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from meshwarden.agent import CallContext
from meshwarden.client import outcome_request, request
from meshwarden.usage import Usage, checked_usage


def context(call_id: str = "c1", session_id: str = "s1") -> CallContext:
    return CallContext(call_id, "plan", "caller", "", session_id, "w1", 1, None, None, "", None, "")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "micro"),
    [(0.0042, 4200), ("0.0042", 4200), (Decimal("1.25"), 1_250_000), (3, 3_000_000), (0.1 + 0.2, 300_000)],
)
def test_cost_in_dollars_becomes_exact_micro_dollars(given: Any, micro: int) -> None:
    assert checked_usage(cost_usd=given).cost_micro_usd == micro


def test_sub_micro_dollar_costs_round_half_even() -> None:
    assert checked_usage(cost_usd="0.0000005").cost_micro_usd == 0
    assert checked_usage(cost_usd="0.0000015").cost_micro_usd == 2


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"input_tokens": -1}, "input_tokens"),
        ({"output_tokens": 1.5}, "output_tokens"),
        ({"output_tokens": True}, "output_tokens"),
        ({"cost_usd": -0.01}, "cost_usd"),
        ({"cost_usd": float("nan")}, "cost_usd"),
        ({"cost_usd": "ten cents"}, "cost_usd"),
        ({"cost_micro_usd": -5}, "cost_micro_usd"),
        ({"cost_usd": 1, "cost_micro_usd": 1}, "not both"),
        ({"model": "m" * 129}, "model"),
    ],
)
def test_bad_usage_is_refused_naming_the_argument(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        checked_usage(**kwargs)


def test_reports_within_one_call_add_up() -> None:
    ctx = context()
    assert ctx.usage is None
    ctx.report_usage(model="gpt-4o-mini", input_tokens=100, output_tokens=20, cost_usd="0.001")
    total = ctx.report_usage(model="gpt-4o-mini", input_tokens=50, output_tokens=5, cost_micro_usd=500)
    assert total == Usage("gpt-4o-mini", 150, 25, 1500)
    assert ctx.report_usage(model="claude-haiku").model == "gpt-4o-mini+claude-haiku"
    assert total.cost_usd == Decimal("0.0015")


def test_usage_survives_the_wire() -> None:
    usage = Usage("m", 1, 2, 3)
    assert Usage.from_proto(usage.to_proto()) == usage


def test_nested_calls_name_their_parent_and_keep_session_and_workflow() -> None:
    options = context(call_id="parent-call")._nested("echo", {})
    assert options["parent_call_id"] == "parent-call"
    assert options["session_id"] == "s1" and options["workflow_id"] == "w1"
    assert request("echo", {}, parent_call_id="p").parent_call_id == "p"


@pytest.mark.parametrize(
    ("session_id", "outcome", "detail", "named"),
    [("", "succeeded", "", "session_id"), ("s", "won", "", "outcome"), ("s", "failed", "x" * 2001, "detail")],
)
def test_outcome_reports_are_checked_before_they_are_sent(
    session_id: str, outcome: str, detail: str, named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        outcome_request(session_id, outcome, detail)
    assert outcome_request("s", "abandoned", "user left").outcome == "abandoned"
