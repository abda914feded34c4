"""Cedar on model calls: the starting bundle's model policies, default deny, and the context
the gateway gives (worst-case cost, tokens, team)."""

from __future__ import annotations

from pathlib import Path

from meshwarden.policy_bundle.init import model_files
from meshwarden.sidecar.policy import ActivePolicy
from meshwarden.sidecar.policy.model_policy import ModelFacts
from tests.policy_helpers import verified


def facts(cost: int) -> ModelFacts:
    return ModelFacts(
        session_id="s-1",
        workflow_id="wf",
        team="support",
        estimated_input_tokens=100,
        max_output_tokens=1024,
        cost_estimate_micro_usd=cost,
    )


def test_the_starting_model_policies(tmp_path: Path) -> None:
    engine = ActivePolicy(verified(tmp_path, model_files()), local_agent="support", local_capabilities=[])
    allowed = engine.model_policy.decide("support", "gpt-4o", facts(10_000))
    assert allowed.allowed and allowed.policy_ids == ("models-within-call-cost",)
    costly = engine.model_policy.decide("support", "gpt-4o", facts(600_000))
    assert not costly.allowed and "no policy permits support to call model gpt-4o" in costly.reason
    tier1 = engine.model_policy.decide("frontdesk", "gpt-4o", facts(10))
    assert not tier1.allowed and "tier1-small-models-only" in tier1.policy_ids
    assert engine.model_policy.decide("frontdesk", "gpt-4o-mini", facts(10)).allowed


def test_a_bundle_without_models_denies_every_model(tmp_path: Path) -> None:
    engine = ActivePolicy(verified(tmp_path), local_agent="support", local_capabilities=[])
    assert not engine.models.models
    assert not engine.model_policy.decide("support", "gpt-4o", facts(1)).allowed


def test_a_permit_with_approval_holds_a_model_call_for_a_person(tmp_path: Path) -> None:
    files = dict(model_files())
    files["policies/costly.cedar"] = (
        '@id("costly-with-approval")\n@approval("a model call over 50 cents")\n'
        'permit (principal, action == Action::"CallModel", resource)\n'
        "when { context.cost_estimate_micro_usd > 500000 };\n"
    )
    engine = ActivePolicy(verified(tmp_path, files), local_agent="support", local_capabilities=[])
    costly = engine.model_policy.decide("support", "gpt-4o", facts(600_000))
    assert costly.allowed and costly.approval_risks == ("a model call over 50 cents",)
    assert engine.model_policy.decide("support", "gpt-4o", facts(10_000)).approval_risks == ()
