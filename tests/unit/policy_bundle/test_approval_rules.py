from __future__ import annotations

import pytest

from meshwarden.policy_bundle.approval_rules import DEFAULT_TTL_S, ApprovalRule, approval_rule


def test_a_permit_with_approval_gets_its_risk_and_ttl() -> None:
    assert approval_rule("permit", {"id": "x"}) is None
    assert approval_rule("permit", {"approval": " big refund "}) == ApprovalRule("big refund", DEFAULT_TTL_S)
    assert approval_rule("permit", {"approval": "r", "approval_ttl_s": "60"}) == ApprovalRule("r", 60)


@pytest.mark.parametrize(
    ("effect", "annotations", "problem"),
    [
        ("forbid", {"approval": "r"}, "permit policy"),
        ("permit", {"approval": " "}, "what makes the call risky"),
        ("permit", {"approval": "r", "approval_ttl_s": "0"}, "whole seconds"),
        ("permit", {"approval": "r", "approval_ttl_s": "1m"}, "whole seconds"),
        ("permit", {"approval_ttl_s": "60"}, "needs @approval"),
    ],
)
def test_bad_annotations_say_what_is_wrong(effect: str, annotations: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        approval_rule(effect, annotations)
