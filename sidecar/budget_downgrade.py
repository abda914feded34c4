"""The model gateway's downgrade: when a budget cannot cover a model call, run it on a cheaper
model instead, if the catalog declares one among the model's fallbacks and policy allows it.

Given to the budget stage (`budget.layer(..., downgrade=...)`) in the model pipeline. It looks
at the requested model's fallbacks in the order models.json lists them, and takes the first
that speaks the same API, whose worst case (the same input estimate and output cap, at its
prices) is below the call's and fits in what the refusing budget has left, and that Cedar's
`CallModel` allows for this agent at that cost. The receipt then names the model asked for
(`budget_downgraded_from`); the call runs as the cheaper one, its own fallbacks included.
"""

from __future__ import annotations

from dataclasses import replace

from meshwarden.errors import BudgetExhausted
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call
from meshwarden.sidecar.policy.model_policy import ModelFacts
from meshwarden.sidecar.stages.budget import Downgrade


def cheaper_fallback(holder: PolicyHolder) -> Downgrade:
    def downgrade(call: Call, refusal: BudgetExhausted) -> Call | None:
        active, request, asked = holder.active, call.model, call.cost_estimate_micro_usd
        if active is None or request is None or asked is None:
            return None
        catalog = active.models
        chain = catalog.chain(call.capability)
        if not chain:
            return None
        api = catalog.api_of(chain[0])
        for entry in chain[1:]:
            if catalog.api_of(entry) != api:
                continue
            cost = entry.prices.cost_micro_usd(request.estimated_input_tokens, request.max_output_tokens)
            if cost >= asked or cost > refusal.remaining_micro_usd:
                continue
            facts = ModelFacts(
                session_id=call.session_id,
                workflow_id=call.workflow_id,
                team=active.team_of(call.caller.agent),
                estimated_input_tokens=request.estimated_input_tokens,
                max_output_tokens=request.max_output_tokens,
                cost_estimate_micro_usd=cost,
            )
            if not active.model_policy.decide(call.caller.agent, entry.name, facts).allowed:
                continue
            return replace(
                call,
                capability=entry.name,
                cost_estimate_micro_usd=cost,
                model=replace(request, provider=entry.provider),
            )
        return None

    return downgrade
