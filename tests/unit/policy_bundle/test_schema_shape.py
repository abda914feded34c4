"""policy_bundle.schema_shape: the types of `action "call"` read from Cedar schema text."""

from __future__ import annotations

import cedarpy
import pytest

from meshwarden.policy_bundle.schema_shape import (
    Named,
    Primitive,
    RecordOf,
    SchemaShapeError,
    SetOf,
    read_call_action,
    read_schema,
)

SCHEMA = """\
// types by alias, sets, nested records, quoted names and annotations
type Money = Long;
type Args = { amount?: Money, "odd name"?: String, tags?: Set<String>, nested?: { a: Long, @doc("b") b?: Bool }, ip?: ipaddr };
entity Team;
entity Agent in [Team] = { tier: Long };
entity Capability { risk_tier: __cedar::Long };
@doc("the one action")
action "call" in ["all"] appliesTo {
  principal: [Agent],
  resource: Capability,
  context: { args: Args, session_id: String, time: { unix: Long }, cost_estimate_micro_usd?: Long, },
};
action "all";
namespace Other { entity Thing; action "view" appliesTo { principal: Thing, resource: Thing }; }
"""


def test_the_call_action_is_read_with_types_resolved() -> None:
    cedarpy.Schema.from_str(SCHEMA)  # what build checks first
    action = read_call_action(SCHEMA)
    assert (action.principal_types, action.resource_types, action.line) == (("Agent",), ("Capability",), 8)
    context = action.context.attributes
    assert context["session_id"].type == Primitive("String") and context["session_id"].required
    assert not context["cost_estimate_micro_usd"].required
    args = context["args"].type
    assert isinstance(args, RecordOf)
    assert args.attributes["amount"].type == Primitive("Long") and not args.attributes["amount"].required
    assert args.attributes["odd name"].type == Primitive("String")
    assert args.attributes["tags"].type == SetOf(Primitive("String"))
    nested = args.attributes["nested"].type
    assert isinstance(nested, RecordOf) and nested.attributes["a"].required and not nested.attributes["b"].required
    assert args.attributes["ip"].type == Named("ipaddr")


def test_entity_declarations_are_read_too() -> None:
    shape = read_schema(SCHEMA)
    assert shape.entities["Agent"].parent_types == ("Team",)
    assert shape.entities["Agent"].attributes.attributes["tier"].type == Primitive("Long")
    assert shape.entities["Capability"].attributes.attributes["risk_tier"].type == Primitive("Long")
    assert "Other::Thing" not in shape.entities


def test_a_schema_without_the_call_action_is_refused() -> None:
    with pytest.raises(SchemaShapeError, match='no `action "call"`'):
        read_call_action("entity A;")
