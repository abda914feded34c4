"""registry.console.timeline: a session's calls as a tree, with the receipts' details."""

from __future__ import annotations

from meshwarden.registry.console.timeline import tree
from tests.unit.receipt_fixtures import both_sides, receipt


def test_calls_nest_under_the_call_that_made_them_in_the_order_they_started() -> None:
    root = both_sides("c1", "frontdesk", "planner", "plan", at=1000.0)
    child_late = both_sides("c3", "planner", "kb", "kb.search", parent="c1", at=1002.0)
    child = both_sides("c2", "planner", "billing", "billing.refund", parent="c1", at=1001.0)
    grandchild = [receipt("inbound", "c4", "billing", "ledger", "ledger.write", parent="c2", at=1001.5)]
    orphan = both_sides("c5", "frontdesk", "kb", "kb.search", parent="gone", at=1003.0)
    for r in child[:1]:
        r.policy_ids.append("refund-large")
        r.approval_id, r.approval_decision, r.approver = "ap-000000000001", "approved", "operator:sha256:ab"
    roots = tree([*root, *child_late, *child, *grandchild, *orphan])
    assert [s.call.call_id for s in roots] == ["c1", "c5"]  # c5's parent is not in the session
    assert [s.call.call_id for s in roots[0].children] == ["c2", "c3"]
    refund = roots[0].children[0]
    assert refund.policy_ids == ("refund-large",) and refund.approval_decision == "approved"
    assert refund.approver == "operator:sha256:ab"  # read from the caller's receipt
    assert [s.call.call_id for s in refund.children] == ["c4"]  # only the callee's receipt is stored


def test_a_model_call_names_its_model_and_tokens() -> None:
    model = receipt("outbound", "m1", "support", "", "model.chat", usage=("gpt-x", 120, 30, 45))
    model.call_kind, model.model_provider, model.model_response = "model", "openai", "gpt-x-2026"
    [step] = tree([model])
    assert (step.model, step.tokens, step.call.cost_micro_usd) == ("gpt-x-2026", 150, 45)
