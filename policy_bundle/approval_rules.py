"""`@approval("...")` on a permit policy: the calls it permits need a person's approval first.

Why an annotation, not a separate approvals file: Cedar's answer is allow or deny, and "allow,
once a person agrees" is a property of the permit that allows the call. Written beside the
permit, the condition that needs approval is the permit's own `when` clause (an amount above a
limit, a destructive tool, a team), in the same language, checked by the same schema, and the
bundle reads as one list of who may call what and on which terms:

    @id("refund-large-needs-approval")
    @approval("refund of 100 dollars or more")       // the risk factor the reviewer sees
    @approval_ttl_s("900")                            // optional: how long a decision may take
    permit (principal in Team::"support", action == Action::"call",
            resource == Capability::"billing.refund") when { context.args.amount >= 10000 };

A call needs approval when every permit that allows it carries @approval: a plain permit that
also matches (a small refund) lets the call through without one, and a forbid still denies.
`meshwarden bundle build` refuses @approval on a forbid, an empty text, and a bad ttl.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

APPROVAL: Final = "approval"
APPROVAL_TTL: Final = "approval_ttl_s"
DEFAULT_TTL_S: Final = 900
MIN_TTL_S: Final = 1
MAX_TTL_S: Final = 7 * 24 * 3600
MAX_RISK_CHARS: Final = 200


@dataclass(frozen=True, slots=True)
class ApprovalRule:
    risk: str  # what the reviewer is told makes this call risky
    ttl_s: int  # how long a decision may take, and an approval stays usable


def approval_rule(effect: str, annotations: Mapping[str, str]) -> ApprovalRule | None:
    """The policy's approval rule (None: it needs none); ValueError says what is wrong."""
    risk = annotations.get(APPROVAL)
    ttl_text = annotations.get(APPROVAL_TTL)
    if risk is None:
        if ttl_text is not None:
            raise ValueError(f'@{APPROVAL_TTL} needs @{APPROVAL}("...") on the same policy')
        return None
    if effect != "permit":
        raise ValueError(f"@{APPROVAL} belongs on a permit policy (a forbid denies; there is nothing to approve)")
    if not risk.strip() or len(risk) > MAX_RISK_CHARS:
        raise ValueError(f"@{APPROVAL} must say what makes the call risky, in 1 to {MAX_RISK_CHARS} characters")
    if ttl_text is None:
        return ApprovalRule(risk.strip(), DEFAULT_TTL_S)
    if not ttl_text.isdigit() or not MIN_TTL_S <= int(ttl_text) <= MAX_TTL_S:
        raise ValueError(f"@{APPROVAL_TTL} must be whole seconds from {MIN_TTL_S} to {MAX_TTL_S}, got {ttl_text!r}")
    return ApprovalRule(risk.strip(), int(ttl_text))
