"""sidecar.policy.ActivePolicy: the starting bundle's two example policies, default deny,
reasons, unknown agents, the argument mapping at the edge, and what activation refuses."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from meshwarden.policy_bundle.errors import BundleError
from meshwarden.policy_bundle.init import SCHEMA
from meshwarden.policy_bundle.verify import VerifiedBundle
from meshwarden.sidecar.policy import (
    ActivePolicy,
    ArgumentsNotMappable,
    Caller,
    CallFacts,
    Decision,
    Direction,
    Slicing,
)
from tests.policy_helpers import verified
from tests.unit.sidecar.fakes import call

FACTS = CallFacts(now_unix_s=1_763_700_000, session_id="s-1")  # Friday 2025-11-21, 04:40 UTC
OUT, IN = Direction.OUTBOUND, Direction.INBOUND


@pytest.fixture
def bundle(tmp_path: Path) -> VerifiedBundle:
    return verified(tmp_path)


def outbound(bundle: VerifiedBundle, agent: str, capability: str, args: object) -> Decision:
    engine = ActivePolicy(bundle, local_agent=agent, local_capabilities=[])
    return engine.decide(
        OUT, Caller(agent, f"spiffe://meshwarden.local/agent/{agent}"), capability, json.dumps(args).encode(), FACTS
    )


def inbound(bundle: VerifiedBundle, caller: str, capability: str, args: object) -> Decision:
    engine = ActivePolicy(bundle, local_agent="billing", local_capabilities=["billing.refund"])
    return engine.decide(IN, Caller(caller), capability, json.dumps(args).encode(), FACTS)


def test_a_tier_1_agent_may_not_call_a_risk_3_tool(bundle: VerifiedBundle) -> None:
    decision = outbound(bundle, "frontdesk", "billing.refund", {"customer_id": "C7", "amount_cents": 50})
    assert decision == Decision(
        False,
        ("tier1-no-risk3",),
        "denied by tier1-no-risk3: agents of tier 1 may not call tools of risk tier 3; go through an agent of a "
        "higher tier (support), or ask the platform team to review this agent's tier (bundle demo rev 1)",
    )
    assert outbound(bundle, "frontdesk", "kb.search", {"query": "refund"}).allowed


def test_refunds_under_100_dollars_are_allowed_to_support(bundle: VerifiedBundle) -> None:
    decision = outbound(bundle, "support", "billing.refund", {"customer_id": "C7", "amount_cents": 5000})
    assert decision == Decision(
        True,
        ("refunds-by-support",),
        "permitted by refunds-by-support: support agents issue refunds (bundle demo rev 1)",
    )


def test_refunds_of_100_dollars_or_more_need_finance(bundle: VerifiedBundle) -> None:
    denied = outbound(bundle, "support", "billing.refund", {"customer_id": "C7", "amount_cents": 15000})
    assert not denied.allowed and denied.policy_ids == ("refunds-under-100-dollars",)
    assert "need an agent of team finance" in denied.reason
    assert outbound(bundle, "support", "billing.refund", {"amount_cents": 10000}).policy_ids == (
        "refunds-under-100-dollars",
    )
    assert outbound(bundle, "support", "billing.refund", {"amount_cents": 9999}).allowed
    assert outbound(bundle, "billing", "billing.refund", {"customer_id": "C7", "amount_cents": 15000}).allowed


def test_a_refund_without_an_amount_is_denied(bundle: VerifiedBundle) -> None:
    assert outbound(bundle, "support", "billing.refund", {"customer_id": "C7"}).policy_ids == (
        "refunds-under-100-dollars",
    )


def test_a_fractional_amount_is_refused_naming_the_path(bundle: VerifiedBundle) -> None:
    with pytest.raises(ArgumentsNotMappable) as info:
        outbound(bundle, "support", "billing.refund", {"customer_id": "C7", "amount_cents": 12.5})
    assert info.value.path == "$.amount_cents"
    assert str(info.value) == (
        "$.amount_cents is 12.5: Cedar has no floating-point numbers; send an integer (for money, integer cents) "
        "(policy bundle demo rev 1)"
    )


def test_floats_no_applicable_policy_reads_pass(bundle: VerifiedBundle) -> None:
    assert outbound(bundle, "support", "kb.search", {"query": "refund", "think_s": 2.5}).allowed


def test_inbound_decisions_check_the_caller_again(bundle: VerifiedBundle) -> None:
    assert inbound(bundle, "support", "billing.refund", {"amount_cents": 50}).allowed
    assert inbound(bundle, "frontdesk", "billing.refund", {"amount_cents": 50}).policy_ids == ("tier1-no-risk3",)
    assert not inbound(bundle, "support", "billing.refund", {"amount_cents": 20000}).allowed


def test_default_deny_names_caller_capability_and_bundle(bundle: VerifiedBundle) -> None:
    decision = outbound(bundle, "kb", "billing.refund", {"amount_cents": 5})
    assert decision == Decision(False, (), "no policy permits kb to call billing.refund (bundle demo rev 1)")


def test_an_agent_unknown_to_the_bundle_is_evaluated_without_attributes(bundle: VerifiedBundle) -> None:
    decision = inbound(bundle, "stranger", "billing.refund", {"amount_cents": 50})
    assert not decision.allowed and decision.policy_ids == ()
    assert decision.reason.startswith(
        'no policy permits stranger to call billing.refund (bundle demo rev 1); could not be evaluated: tier1-no-risk3: entity `Agent::"stranger"` does not exist'
    )


def test_a_forbid_that_cannot_be_evaluated_denies_even_when_a_permit_matches(tmp_path: Path) -> None:
    open_door = (
        '@id("anyone-may-search")\npermit (principal, action == Action::"call", resource == Capability::"kb.search");\n'
    )
    bundle = verified(tmp_path, {"policies/open.cedar": open_door})
    engine = ActivePolicy(bundle, local_agent="kb", local_capabilities=["kb.search"])
    decision = engine.decide(IN, Caller("stranger"), "kb.search", b"{}", FACTS)
    assert decision.allowed is False and decision.policy_ids == ("tier1-no-risk3",)
    assert decision.reason.startswith(
        "denied because a forbid policy could not be evaluated and might apply (tier1-no-risk3: entity"
    )
    assert engine.decide(IN, Caller("support"), "kb.search", b"{}", FACTS).allowed


def test_a_capability_unknown_to_the_bundle_is_denied(bundle: VerifiedBundle) -> None:
    decision = outbound(bundle, "support", "weather.today", {})
    assert not decision.allowed and decision.reason.startswith(
        "no policy permits support to call weather.today (bundle demo rev 1)"
    )


def test_a_spiffe_id_other_than_the_one_the_bundle_pins_is_denied(bundle: VerifiedBundle) -> None:
    engine = ActivePolicy(bundle, local_agent="billing", local_capabilities=["billing.refund"])
    decision = engine.decide(
        IN,
        Caller("support", "spiffe://elsewhere.example/agent/support"),
        "billing.refund",
        b'{"amount_cents": 5}',
        FACTS,
    )
    assert (
        not decision.allowed
        and "gives agent support the SPIFFE ID spiffe://meshwarden.local/agent/support" in decision.reason
    )


def test_every_allowed_decision_names_its_deciding_policies(bundle: VerifiedBundle) -> None:
    decision = outbound(bundle, "billing", "kb.search", {"query": "x"})
    assert decision.policy_ids == ("low-and-medium-risk",)
    assert "low-and-medium-risk" in decision.reason


def test_context_fields_reach_policies(tmp_path: Path) -> None:
    policies = {
        "policies/context.cedar": (
            '@id("weekdays-only") forbid (principal, action == Action::"call", resource == Capability::"kb.search")'
            " when { context.time.weekday >= 6 };\n"
            '@id("needs-a-session") forbid (principal, action == Action::"call", resource == Capability::"kb.search")'
            ' when { context.session_id == "" };\n'
            '@id("budget") forbid (principal, action == Action::"call", resource == Capability::"kb.search")'
            " unless { context has cost_estimate_micro_usd && context.cost_estimate_micro_usd <= 1000 };\n"
        )
    }
    engine = ActivePolicy(verified(tmp_path, policies), local_agent="support", local_capabilities=[])
    caller = Caller("support")

    def decide(**facts: object) -> tuple[str, ...]:
        base: dict[str, object] = {"now_unix_s": 1_763_700_000, "session_id": "s", "cost_estimate_micro_usd": 10}
        return engine.decide(OUT, caller, "kb.search", b"{}", CallFacts(**{**base, **facts})).policy_ids  # type: ignore[arg-type]

    assert decide() == ("low-and-medium-risk",)
    assert decide(now_unix_s=1_763_800_000) == ("weekdays-only",)  # Saturday
    assert decide(session_id="") == ("needs-a-session",)
    assert decide(cost_estimate_micro_usd=None) == ("budget",)
    assert decide(cost_estimate_micro_usd=5000) == ("budget",)


@pytest.mark.parametrize("slicing", list(Slicing))
def test_every_slicing_and_the_cache_decide_alike(bundle: VerifiedBundle, slicing: Slicing) -> None:
    cached = ActivePolicy(bundle, local_agent="support", local_capabilities=["support.resolve_ticket"], slicing=slicing)
    uncached = ActivePolicy(
        bundle,
        local_agent="support",
        local_capabilities=["support.resolve_ticket"],
        slicing=slicing,
        decision_cache_size=0,
    )
    for _ in range(2):
        for capability, amount in [("billing.refund", 5), ("billing.refund", 50000), ("kb.search", 1), ("x.y", 1)]:
            args = json.dumps({"amount_cents": amount}).encode()
            first = cached.decide(OUT, Caller("support"), capability, args, FACTS)
            assert first == uncached.decide(OUT, Caller("support"), capability, args, FACTS)
            assert first == outbound(bundle, "support", capability, {"amount_cents": amount})


def test_a_bundle_that_does_not_parse_cannot_be_activated(bundle: VerifiedBundle) -> None:
    broken = bundle.contents.__class__(
        manifest=bundle.contents.manifest,
        schema_text=SCHEMA.replace("entity Team;", "entity Team"),
        policy_files=bundle.contents.policy_files,
        entities_text=bundle.contents.entities_text,
    )
    with pytest.raises(BundleError, match="bundle demo rev 1: cannot be activated"):
        ActivePolicy(VerifiedBundle(broken, bundle.digest, bundle.key_id), local_agent="kb", local_capabilities=[])


def test_the_engine_reports_what_it_runs(bundle: VerifiedBundle) -> None:
    engine = ActivePolicy(bundle, local_agent="support", local_capabilities=["support.resolve_ticket"])
    assert (engine.name, engine.revision, engine.digest, engine.policy_count) == ("demo", 1, bundle.digest, 5)
    assert engine.slice_size(OUT, "support", "kb.search") == 1  # only low-and-medium-risk can apply
    assert engine.slice_size(OUT, "support", "billing.refund") == 2  # refunds-by-support, refunds-under-100-dollars


def test_policies_whose_leading_entity_conditions_are_false_for_a_pair_are_left_out(tmp_path: Path) -> None:
    weekend = (
        '@id("no-risky-weekends")\nforbid (principal, action == Action::"call", resource)\n'
        "when { resource.risk_tier == 3 && context.time.weekday >= 6 };\n"
    )
    engine = ActivePolicy(
        verified(tmp_path, {"policies/weekend.cedar": weekend}), local_agent="billing", local_capabilities=[]
    )
    assert engine.slice_size(OUT, "billing", "kb.search") == 1  # risk tier 1: the weekend rule cannot apply
    assert engine.slice_size(OUT, "billing", "billing.refund") == 3  # risk tier 3: it can
    saturday = CallFacts(now_unix_s=1_763_800_000)
    refund = engine.decide(OUT, Caller("billing"), "billing.refund", b'{"amount_cents": 5}', saturday)
    assert refund.policy_ids == ("no-risky-weekends",)
    assert engine.decide(OUT, Caller("billing"), "kb.search", b"{}", saturday).allowed


def test_capability_kind_is_the_bundles_kind_attribute(bundle: VerifiedBundle) -> None:
    engine = ActivePolicy(bundle, local_agent="support", local_capabilities=[])
    assert engine.capability_kind("billing.refund") == "tool"
    assert engine.capability_kind("support.resolve_ticket") == "capability"
    assert engine.capability_kind("not.in.the.bundle") == ""


APPROVAL_POLICIES = """
@id("refund-small")
permit (principal, action == Action::"call", resource == Capability::"billing.refund")
when { context.args has amount_cents && context.args.amount_cents < 10000 };

@id("refund-large")
@approval("refund of 100 dollars or more")
@approval_ttl_s("120")
permit (principal, action == Action::"call", resource == Capability::"billing.refund")
when { context.args has amount_cents && context.args.amount_cents >= 5000 };
"""


def test_a_call_needs_approval_only_when_every_deciding_permit_asks_for_it(tmp_path: Path) -> None:
    bundle = verified(
        tmp_path,
        {"policies/refunds.cedar": APPROVAL_POLICIES, "policies/baseline.cedar": None, "policies/tiers.cedar": None},
    )
    large = outbound(bundle, "support", "billing.refund", {"customer_id": "C7", "amount_cents": 15000})
    assert large.allowed and large.approval_risks == ("refund of 100 dollars or more",) and large.approval_ttl_s == 120
    both = outbound(bundle, "support", "billing.refund", {"customer_id": "C7", "amount_cents": 6000})
    assert both.allowed and both.approval_risks == ()  # a plain permit also matches: no approval
    small = outbound(bundle, "support", "billing.refund", {"customer_id": "C7", "amount_cents": 100})
    assert small.allowed and small.approval_risks == ()


def test_a_policy_leaves_no_cyclic_garbage(bundle: VerifiedBundle) -> None:
    """The bundle loader freezes the heap after each build (sidecar.bundle_loader.build_window),
    so a replaced policy must be freed by reference counting alone, its caches filled or not."""
    gc.collect()
    gc.disable()
    try:
        engine = ActivePolicy(bundle, local_agent="support", local_capabilities=["support.ticket"])
        caller = Caller("support", "spiffe://meshwarden.local/agent/support")
        for amount in (50, 5000, 25000):
            engine.decide(OUT, caller, "billing.refund", json.dumps({"amount_cents": amount}).encode(), FACTS)
        engine.decide(IN, Caller("frontdesk"), "support.ticket", b"{}", FACTS)
        del engine
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_arguments_given_parsed_decide_as_their_text_and_are_parsed_only_when_read(bundle: VerifiedBundle) -> None:
    """The policy stage hands a call's cached parse (Call.cedar_arguments), not the text."""
    engine = ActivePolicy(bundle, local_agent="support", local_capabilities=[])
    caller = Caller("support", "spiffe://meshwarden.local/agent/support")
    for amount in (5000, 15000):
        text = json.dumps({"customer_id": "C7", "amount_cents": amount}).encode()
        parsed = call(payload=text)
        assert engine.decide(OUT, caller, "billing.refund", parsed.cedar_arguments, FACTS) == engine.decide(
            OUT, caller, "billing.refund", text, FACTS
        )
    not_read = call(payload=b"{not json")  # kb.search's policies read no argument: never parsed
    assert engine.decide(OUT, caller, "kb.search", not_read.cedar_arguments, FACTS).allowed
    with pytest.raises(ArgumentsNotMappable) as info:
        engine.decide(OUT, caller, "billing.refund", call(payload=b'{"amount_cents": 12.5}').cedar_arguments, FACTS)
    assert info.value.path == "$.amount_cents" and str(info.value).endswith("(policy bundle demo rev 1)")


def test_a_rebuild_reuses_the_parse_of_unchanged_files_and_parses_changed_ones(tmp_path: Path) -> None:
    first = ActivePolicy(verified(tmp_path / "a"), local_agent="billing", local_capabilities=[])
    weekend = (
        '@id("no-risky-weekends")\nforbid (principal, action == Action::"call", resource)\n'
        "when { resource.risk_tier == 3 && context.time.weekday >= 6 };\n"
    )
    changed = verified(tmp_path / "b", {"policies/weekend.cedar": weekend})
    second = ActivePolicy(changed, local_agent="billing", local_capabilities=[], parsed=first.parsed_files)
    unchanged = [text for text in second.parsed_files if text in first.parsed_files]
    assert unchanged and all(second.parsed_files[t] is first.parsed_files[t] for t in unchanged)
    assert weekend in second.parsed_files and weekend not in first.parsed_files
    saturday = CallFacts(now_unix_s=1_763_800_000)
    fresh = ActivePolicy(changed, local_agent="billing", local_capabilities=[])
    for engine in (second, fresh):  # reused or parsed anew, the same decisions
        assert engine.policy_count == 6
        refund = engine.decide(OUT, Caller("billing"), "billing.refund", b'{"amount_cents": 5}', saturday)
        assert refund.policy_ids == ("no-risky-weekends",)
