"""sidecar.policy.reads: what policies read of the context, from their parsed form."""

from __future__ import annotations

import cedarpy

from meshwarden.sidecar.policy.reads import EVERYTHING, NOTHING, Reads, context_reads


def reads_of(*conditions: str) -> Reads:
    text = "\n".join(f"permit (principal, action, resource) when {{ {c} }};" for c in conditions)
    return context_reads(cedarpy.PolicySet.from_str(text).to_pst().static_policies.values())


def test_policies_without_context_read_nothing() -> None:
    assert reads_of("principal.tier > 1", "true") == NOTHING
    assert not NOTHING.anything


def test_an_attribute_chain_reads_its_end_whole() -> None:
    assert reads_of("context.args.amount < 100") == Reads(parts={"args": Reads(parts={"amount": EVERYTHING})})


def test_has_reads_presence_only_unless_the_value_is_read_too() -> None:
    assert reads_of("context.args has note") == Reads(parts={"args": Reads(parts={"note": Reads(presence_only=True)})})
    both = reads_of("context.args has amount && context.args.amount < 5")
    assert both == Reads(parts={"args": Reads(parts={"amount": EVERYTHING})})


def test_a_chain_used_as_a_value_reads_all_below_it() -> None:
    assert reads_of("context.args == {}") == Reads(parts={"args": EVERYTHING})
    assert reads_of('context.args.tags.contains("x")', "context.args.tags.isEmpty()") == Reads(
        parts={"args": Reads(parts={"tags": EVERYTHING})}
    )
    assert reads_of("context == {}") == EVERYTHING


def test_reads_merge_across_policies_and_fields() -> None:
    merged = reads_of("context.time.weekday == 6", 'context.session_id == ""', "context.time.hour < 8")
    assert merged == Reads(
        parts={"time": Reads(parts={"weekday": EVERYTHING, "hour": EVERYTHING}), "session_id": EVERYTHING}
    )
    nested = reads_of("context.args has customer.tier", 'context.args.customer.id == "C1"')
    assert nested == Reads(
        parts={"args": Reads(parts={"customer": Reads(parts={"tier": Reads(presence_only=True), "id": EVERYTHING})})}
    )
