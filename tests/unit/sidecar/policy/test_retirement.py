"""sidecar.policy.retirement: a replaced policy is taken apart only when nothing else holds
it, and what something else holds of it is left intact."""

from __future__ import annotations

import weakref
from pathlib import Path

from meshwarden.policy_bundle.init import model_files
from meshwarden.sidecar.policy import ActivePolicy, retirement
from meshwarden.sidecar.policy.model_policy import ModelFacts
from tests.policy_helpers import verified

FACTS = ModelFacts(
    session_id="s-1",
    workflow_id="wf",
    team="support",
    estimated_input_tokens=100,
    max_output_tokens=1024,
    cost_estimate_micro_usd=10_000,
)


def test_a_policy_a_call_still_holds_is_not_the_boxes_alone(tmp_path: Path) -> None:
    box = [ActivePolicy(verified(tmp_path), local_agent="support", local_capabilities=[])]
    assert retirement.sole_reference(box)
    in_flight = box[0]
    assert not retirement.sole_reference(box)
    del in_flight
    assert retirement.sole_reference(box)


def test_taking_a_policy_apart_frees_it_and_spares_what_others_hold(tmp_path: Path) -> None:
    policy = ActivePolicy(verified(tmp_path, model_files()), local_agent="support", local_capabilities=[])
    models = policy.model_policy  # what a model call in flight might still be deciding with
    before = models.decide("support", "gpt-4o", FACTS)
    gone = weakref.ref(policy)
    box = [policy]
    del policy
    retirement.take_apart(box)
    assert box == [] and gone() is None
    assert models.decide("support", "gpt-4o", FACTS) == before
