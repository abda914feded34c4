"""Model calls at the outbound policy stage: may the local agent call this model, at this
estimated cost? Cedar's `CallModel` on the bundle's `Model` entities (sidecar/policy/
model_policy.py), decided in the outer stages like every call, before anything is reserved or
sent. A model the bundle's models.json does not declare is refused as unknown (NOT_FOUND, the
provider-shaped 404), since there is nothing to decide on."""

from __future__ import annotations

from meshwarden.errors import PolicyDenied, UnknownModel
from meshwarden.sidecar.call import Call
from meshwarden.sidecar.policy import ActivePolicy
from meshwarden.sidecar.policy.model_policy import ModelFacts


def decide(active: ActivePolicy | None, call: Call, allow_without_policy: bool) -> None:
    """Returns when the call may go on; raises PolicyDenied or UnknownModel otherwise."""
    request = call.model
    if active is None or request is None:
        if allow_without_policy:
            return  # development mode; model routing still needs a catalog
        raise PolicyDenied(
            f"{call.caller.agent} may not call model {call.capability}: no policy bundle is active on this "
            "sidecar (default deny); push one with `meshwarden bundle push`, or see `meshwarden bundle status`"
        )
    if call.capability not in active.models.models:
        raise UnknownModel(call.capability, list(active.models.models))
    facts = ModelFacts(
        session_id=call.session_id,
        workflow_id=call.workflow_id,
        team=active.team_of(call.caller.agent),
        estimated_input_tokens=request.estimated_input_tokens,
        max_output_tokens=request.max_output_tokens,
        cost_estimate_micro_usd=call.cost_estimate_micro_usd or 0,
    )
    decision = active.model_policy.decide(call.caller.agent, call.capability, facts)
    call.record.policy_decision = "allow" if decision.allowed else "deny"
    call.record.policy_ids = decision.policy_ids
    call.record.approval_risks, call.record.approval_ttl_s = decision.approval_risks, decision.approval_ttl_s
    if not decision.allowed:
        raise PolicyDenied(
            f"{call.caller.spiffe_id or call.caller.agent} may not call model {call.capability}: {decision.reason}",
            policy_ids=decision.policy_ids,
        )
