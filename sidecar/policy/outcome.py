"""Cedar's answer as a Decision: which policies decided, and a reason a person can act on.

Cedar allows a call when some permit matches and no forbid does. One rule is added on top:
a forbid that Cedar could not evaluate (it errored, say on an attribute an unknown agent does
not have) turns an allow into a deny, because it might have applied. Reasons quote the
deciding policies' @reason (their @id when they have none) and name the bundle revision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

import cedarpy

from meshwarden.policy_bundle.approval_rules import ApprovalRule
from meshwarden.sidecar.policy.decision import Decision

_EVALUATION_ERROR: Final = re.compile(r"error while evaluating policy `([^`]+)`: (.*)", re.DOTALL)


class Outcomes:
    def __init__(
        self, label: str, reasons: Mapping[str, str], approvals: Mapping[str, ApprovalRule] | None = None
    ) -> None:
        self._label = label  # "bundle demo rev 3"
        self._reasons = dict(reasons)  # policy id -> @reason ("" when none)
        self._approvals = dict(approvals or {})  # policy id -> its @approval rule (permits only)

    def decision(self, result: cedarpy.AuthzResult, forbids: frozenset[str], caller: str, capability: str) -> Decision:
        """`result` (from a policy set whose forbid policies are `forbids`) as a Decision."""
        outcome, diagnostics = result.decision, result.diagnostics
        errors = _evaluation_errors(diagnostics.errors) if diagnostics.errors else {}
        if outcome is cedarpy.Decision.NoDecision:
            detail = "; ".join(diagnostics.errors) or "no detail"
            return Decision(
                False, (), f"the policy engine could not evaluate this call ({detail}); denied ({self._label})"
            )
        deciding = tuple(sorted(diagnostics.reasons))
        if outcome is cedarpy.Decision.Allow:
            unevaluated = tuple(sorted(pid for pid in errors if pid in forbids))
            if unevaluated:
                shown = "; ".join(f"{pid}: {errors[pid]}" for pid in unevaluated)
                return Decision(
                    False,
                    unevaluated,
                    f"denied because a forbid policy could not be evaluated and might apply ({shown}) ({self._label})",
                )
            rules = [self._approvals.get(pid) for pid in deciding]
            if deciding and all(rule is not None for rule in rules):  # every permit asks for a person's approval
                needed = [rule for rule in rules if rule is not None]
                return Decision(
                    True,
                    deciding,
                    f"permitted once approved, by {self._explain(deciding)} ({self._label})",
                    approval_risks=tuple(dict.fromkeys(rule.risk for rule in needed)),
                    approval_ttl_s=min(rule.ttl_s for rule in needed),
                )
            return Decision(True, deciding, f"permitted by {self._explain(deciding)} ({self._label})")
        if deciding:
            return Decision(False, deciding, f"denied by {self._explain(deciding)} ({self._label})")
        return self.default_deny(caller, capability, errors)

    def default_deny(self, caller: str, capability: str, errors: Mapping[str, str] | None = None) -> Decision:
        reason = f"no policy permits {caller} to call {capability} ({self._label})"
        if errors:
            reason += "; could not be evaluated: " + "; ".join(f"{pid}: {text}" for pid, text in sorted(errors.items()))
        return Decision(False, (), reason)

    def _explain(self, policy_ids: tuple[str, ...]) -> str:
        return "; ".join(f"{pid}: {self._reasons[pid]}" if self._reasons.get(pid) else pid for pid in policy_ids)


def _evaluation_errors(errors: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for text in errors:
        match = _EVALUATION_ERROR.match(text)
        if match:
            found[match.group(1)] = match.group(2)
    return found
