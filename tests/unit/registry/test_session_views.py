"""Sessions and cost tables from receipts and outcomes (pure functions)."""

from __future__ import annotations

import pytest

from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.outcomes import StoredOutcome
from meshwarden.registry.session_views import SessionFilter, cost_rows, list_sessions
from meshwarden.v1 import receipts_pb2
from tests.unit.receipt_fixtures import both_sides

GPT = ("gpt-4o", 1000, 200, 7000)
MINI = ("gpt-4o-mini", 500, 50, 300)


def receipts() -> list[receipts_pb2.Receipt]:
    """s1 (workflow w1): frontdesk -> planner (gpt-4o) -> billing (mini), planner -> kb (no usage).
    s2 (workflow w2): frontdesk -> billing (mini), twice. s3: frontdesk -> kb."""
    return [
        *both_sides("c1", "frontdesk", "planner", "plan", session="s1", at=1000.0, usage=GPT),
        *both_sides("c2", "planner", "billing", "billing.refund", session="s1", parent="c1", at=1000.1, usage=MINI),
        *both_sides("c3", "planner", "kb", "kb.search", session="s1", parent="c1", at=1000.2),
        *both_sides("c4", "frontdesk", "billing", "billing.refund", session="s2", workflow="w2", at=1005.0, usage=MINI),
        *both_sides("c5", "frontdesk", "billing", "billing.refund", session="s2", workflow="w2", at=1006.0, usage=MINI),
        *both_sides("c6", "frontdesk", "kb", "kb.search", session="s3", workflow="w3", at=1010.0),
    ]


def outcome(session: str, what: str, at: float = 1020.0) -> StoredOutcome:
    return StoredOutcome(session_id=session, outcome=what, detail="", reported_by="frontdesk", reported_at=at)


OUTCOMES = {"s1": outcome("s1", "succeeded", at=1030.0), "s2": outcome("s2", "failed")}


def listed(**wanted: object) -> list[str]:
    return [s.session_id for s in list_sessions(receipts(), OUTCOMES, SessionFilter(**wanted))]  # type: ignore[arg-type]


def test_sessions_are_summarized_newest_first() -> None:
    sessions = list_sessions(receipts(), OUTCOMES, SessionFilter())
    assert [s.session_id for s in sessions] == ["s1", "s2", "s3"]  # by last activity: s1's outcome came last
    s1 = sessions[0]
    assert (s1.state, s1.calls, s1.cost_micro_usd, s1.workflow_id) == ("succeeded", 3, 7300, "w1")
    assert list(s1.agents) == ["billing", "frontdesk", "kb", "planner"]
    assert list(s1.teams) == ["finance", "knowledge", "support"]
    assert sessions[2].state == "running"


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ({"state": "running"}, ["s3"]),
        ({"state": "finished"}, ["s1", "s2"]),
        ({"agent": "kb"}, ["s1", "s3"]),
        ({"team": "finance"}, ["s1", "s2"]),
        ({"workflow_id": "w2"}, ["s2"]),
        ({"limit": 1}, ["s1"]),
        ({"agent": "nobody"}, []),
    ],
)
def test_sessions_filter(wanted: dict[str, object], expected: list[str]) -> None:
    assert listed(**wanted) == expected


def test_bad_filters_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidInput, match="state"):
        SessionFilter.from_proto(receipts_pb2.ListSessionsRequest(state="done"))
    with pytest.raises(InvalidInput, match="limit"):
        SessionFilter.from_proto(receipts_pb2.ListSessionsRequest(limit=5000))


def rows(by: str) -> dict[str, tuple[int, int, int, int]]:
    return {
        r.key: (r.cost_micro_usd, r.calls, r.successful_outcomes, r.cost_per_successful_outcome_micro_usd)
        for r in cost_rows(receipts(), OUTCOMES, by)
    }


def test_costs_by_each_key() -> None:
    assert rows("agent") == {"planner": (7000, 1, 1, 7000), "billing": (900, 3, 1, 900), "kb": (0, 2, 1, 0)}
    assert rows("team") == {"support": (7000, 1, 1, 7000), "finance": (900, 3, 1, 900), "knowledge": (0, 2, 1, 0)}
    assert rows("workflow") == {"w1": (7300, 3, 1, 7300), "w2": (600, 2, 0, 0), "w3": (0, 1, 0, 0)}
    assert rows("capability") == {
        "plan": (7000, 1, 1, 7000),
        "billing.refund": (900, 3, 1, 900),
        "kb.search": (0, 2, 1, 0),
    }
    assert rows("model") == {"gpt-4o": (7000, 1, 1, 7000), "gpt-4o-mini": (900, 3, 1, 900), "": (0, 2, 1, 0)}


def test_cost_rows_come_biggest_spend_first_and_an_unknown_key_is_refused() -> None:
    assert [r.key for r in cost_rows(receipts(), OUTCOMES, "agent")] == ["planner", "billing", "kb"]
    with pytest.raises(InvalidInput, match="by"):
        cost_rows(receipts(), OUTCOMES, "colour")


def test_cost_per_successful_outcome_divides_the_spend_among_the_successes() -> None:
    both = {**OUTCOMES, "s2": outcome("s2", "succeeded")}
    [billing] = [r for r in cost_rows(receipts(), both, "agent") if r.key == "billing"]
    assert (billing.successful_outcomes, billing.cost_per_successful_outcome_micro_usd) == (2, 450)
