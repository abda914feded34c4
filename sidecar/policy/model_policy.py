"""Cedar on model calls: may this agent call this model, at this estimated cost?

A request is `Agent::"<agent>"`, `Action::"CallModel"`, `Model::"<model>"`, the Model entities
made from the bundle's models.json (provider, tier, prices) beside the bundle's own entities,
and the context the gateway knows before the call leaves (MODEL_CONTEXT in
policy_bundle/model.py). Only the policies that can apply to CallModel are given to Cedar:
those whose action is CallModel, an `action in [...]`, or any action. Default deny, and a
forbid that cannot be evaluated denies, as for agent calls (outcome.py).

Built once per bundle revision, with its ActivePolicy; decisions on the same context are
kept (first in, first out, bounded) since Cedar is deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

import cedarpy
from cedarpy import pst

from meshwarden.policy_bundle.approval_rules import ApprovalRule
from meshwarden.policy_bundle.model import AGENT_TYPE, MODEL_ACTION, MODEL_TYPE
from meshwarden.policy_bundle.model_catalog import ModelCatalog, model_entities
from meshwarden.sidecar.policy.decision import Decision
from meshwarden.sidecar.policy.outcome import Outcomes

_ACTION: Final = {"type": "Action", "id": MODEL_ACTION}
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelFacts:
    """The context of a model call's decision."""

    session_id: str
    workflow_id: str
    team: str
    estimated_input_tokens: int
    max_output_tokens: int
    cost_estimate_micro_usd: int

    def context_json(self) -> str:
        return _ENCODER.encode(
            {
                "session_id": self.session_id,
                "workflow_id": self.workflow_id,
                "team": self.team,
                "estimated_input_tokens": self.estimated_input_tokens,
                "max_output_tokens": self.max_output_tokens,
                "cost_estimate_micro_usd": self.cost_estimate_micro_usd,
            }
        )


@dataclass(frozen=True, slots=True)
class ModelRule:
    """One of the bundle's policies, as ActivePolicy parsed it."""

    policy_id: str
    effect: str
    reason: str
    template: pst.Template


class ModelPolicy:
    def __init__(
        self,
        rules: Sequence[ModelRule],
        catalog: ModelCatalog,
        entities_text: str,
        schema: cedarpy.Schema,
        label: str,
        cache_size: int = 4096,
        approvals: Mapping[str, ApprovalRule] | None = None,  # the permits' @approval rules, by @id
    ) -> None:
        self._label = label
        applicable = [r for r in rules if _may_apply(r.template.action)]
        self._forbids = frozenset(r.policy_id for r in applicable if r.effect == "forbid")
        # a permit's @approval holds a model call as it holds any other
        self._outcomes = Outcomes(label, {r.policy_id: r.reason for r in applicable}, approvals)
        self._policy_set: cedarpy.PolicySet | None = None
        if applicable and catalog.models:
            static = pst.FrozenMap({r.policy_id: replace(r.template, id=r.policy_id) for r in applicable})
            self._policy_set = cedarpy.PolicySet.from_pst(
                pst.PolicySet(templates=pst.FrozenMap(), static_policies=static, template_links=()), release_gil=True
            )
        merged = json.loads(entities_text) + model_entities(catalog)
        self._entities = cedarpy.Entities.from_json_str(json.dumps(merged), schema, release_gil=True) if catalog.models else None
        self._decisions: dict[tuple[str, str, str], Decision] = {}
        self._cache_size = cache_size

    def decide(self, agent: str, model: str, facts: ModelFacts) -> Decision:
        if self._policy_set is None or self._entities is None:
            return self._outcomes.default_deny(agent, f"model {model}")
        context = facts.context_json()
        key = (agent, model, context)
        found = self._decisions.get(key)
        if found is not None:
            return found
        request = {
            "principal": {"type": AGENT_TYPE, "id": agent},
            "action": _ACTION,
            "resource": {"type": MODEL_TYPE, "id": model},
            "context": context,
        }
        result = cedarpy.is_authorized(request, self._policy_set, self._entities)
        decision = self._outcomes.decision(result, self._forbids, agent, f"model {model}")
        if self._cache_size:
            if len(self._decisions) >= self._cache_size:
                self._decisions.pop(next(iter(self._decisions)), None)
            self._decisions[key] = decision
        return decision


def _may_apply(constraint: pst.ActionConstraint) -> bool:
    if isinstance(constraint, pst.ActionEq):
        return (str(constraint.entity.type), constraint.entity.id) == ("Action", MODEL_ACTION)
    return True
