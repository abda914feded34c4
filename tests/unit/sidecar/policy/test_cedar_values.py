"""sidecar.policy.cedar_values: JSON arguments to Cedar exactly, or refused naming the JSON path."""

from __future__ import annotations

import pytest

from meshwarden.policy_bundle.schema_shape import Attribute, Named, Primitive, RecordOf, SetOf
from meshwarden.sidecar.policy.cedar_values import ArgumentsNotMappable, parse_arguments, project, to_cedar
from meshwarden.sidecar.policy.reads import EVERYTHING, Reads

LONG, STRING, BOOL = Primitive("Long"), Primitive("String"), Primitive("Bool")


def record(**attributes: tuple[object, bool]) -> RecordOf:
    return RecordOf({name: Attribute(t, required, 1) for name, (t, required) in attributes.items()})  # type: ignore[arg-type]


ARGS = record(
    amount=(LONG, False),
    note=(STRING, False),
    urgent=(BOOL, False),
    tags=(SetOf(STRING), False),
    customer=(record(id=(STRING, True), tier=(LONG, False)), False),
)


def mapped(args_json: bytes, reads: Reads = EVERYTHING, declared: RecordOf = ARGS) -> dict[str, object]:
    return project(parse_arguments(args_json), reads, declared)


def refusal(args_json: bytes, reads: Reads = EVERYTHING, declared: RecordOf = ARGS) -> ArgumentsNotMappable:
    with pytest.raises(ArgumentsNotMappable) as info:
        mapped(args_json, reads, declared)
    return info.value


def test_integers_strings_booleans_arrays_and_objects_map_as_they_are() -> None:
    raw = b'{"amount": 50, "note": "hi", "urgent": true, "tags": ["a", "b"], "customer": {"id": "C1", "tier": 2}}'
    assert mapped(raw) == {
        "amount": 50,
        "note": "hi",
        "urgent": True,
        "tags": ["a", "b"],
        "customer": {"id": "C1", "tier": 2},
    }


@pytest.mark.parametrize("number", ["12.5", "1e3", "1E3", "-0.0", "2.0"])
def test_floats_are_refused_naming_the_path(number: str) -> None:
    error = refusal(f'{{"amount": {number}}}'.encode())
    assert error.path == "$.amount"
    assert (
        str(error)
        == f"$.amount is {number}: Cedar has no floating-point numbers; send an integer (for money, integer cents)"
    )


def test_floats_deep_inside_are_refused_with_their_full_path() -> None:
    error = refusal(b'{"customer": {"id": "C1", "tier": 1.5}}')
    assert error.path == "$.customer.tier"
    assert refusal(b'{"tags": ["a", 3.25]}').path == "$.tags[1]"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(constant: str) -> None:
    assert f"is {constant}: Cedar has no floating-point numbers" in str(refusal(f'{{"amount": {constant}}}'.encode()))


def test_null_is_refused_rather_than_read_as_absent() -> None:
    assert str(refusal(b'{"note": null}')) == "$.note is null: Cedar has no null; leave the field out instead"


def test_integers_outside_the_long_range_are_refused() -> None:
    assert mapped(b'{"amount": 9223372036854775807}') == {"amount": 2**63 - 1}
    assert "outside Cedar's Long range" in str(refusal(b'{"amount": 9223372036854775808}'))
    assert "outside Cedar's Long range" in str(refusal(b'{"amount": -9223372036854775809}'))


def test_values_of_another_type_than_the_schema_declares_are_refused() -> None:
    assert str(refusal(b'{"amount": "50"}')) == '$.amount is a string ("50"), but the schema declares Long'
    assert str(refusal(b'{"amount": true}')) == "$.amount is true, but the schema declares Long"
    assert str(refusal(b'{"tags": "a"}')) == '$.tags is a string ("a"), but the schema declares Set<String>'
    assert str(refusal(b'{"customer": []}')) == "$.customer is a list, but the schema declares a record"


def test_a_record_read_whole_is_closed_and_complete() -> None:
    assert str(refusal(b'{"customer": {"id": "C1", "extra": 1}}')).startswith(
        "$.customer.extra is not declared in the schema"
    )
    assert str(refusal(b'{"customer": {"tier": 1}}')) == "$.customer.id is missing, but the schema requires it (String)"


def test_only_what_policies_read_is_mapped() -> None:
    reads = Reads(parts={"amount": EVERYTHING, "note": Reads(presence_only=True)})
    raw = b'{"amount": 5, "note": 0.5, "think_s": 2.5, "unknown": null}'
    assert mapped(raw, reads) == {"amount": 5, "note": True}  # `has note` only: its value is never read


def test_a_missing_required_attribute_that_is_read_is_refused() -> None:
    declared = record(amount=(LONG, True))
    assert (
        str(refusal(b"{}", Reads(parts={"amount": EVERYTHING}), declared))
        == "$.amount is missing, but the schema requires it (Long)"
    )
    assert mapped(b"{}", Reads(parts={"amount": EVERYTHING})) == {}  # optional: left out


def test_parts_of_nested_records_are_mapped_alone() -> None:
    reads = Reads(parts={"customer": Reads(parts={"tier": EVERYTHING})})
    assert mapped(b'{"customer": {"id": "C1", "tier": 3, "other": 0.5}}', reads) == {"customer": {"tier": 3}}
    assert refusal(b'{"customer": "C1"}', reads).path == "$.customer"


def test_repeated_keys_are_refused() -> None:
    error = refusal(b'{"amount": 5, "amount": 50000}')
    assert "the key 'amount' appears twice in one object; send each key once" in str(error)


def test_cedar_escape_keys_are_refused() -> None:
    declared = record(target=(record(__entity=(STRING, False)), False))
    error = refusal(b'{"target": {"__entity": "x"}}', EVERYTHING, declared)
    assert error.path == "$.target.__entity" and "reserved by Cedar's JSON format" in str(error)


def test_arguments_must_be_a_json_object() -> None:
    assert str(refusal(b"[1]")) == "the arguments are a list; send a JSON object"
    assert str(refusal(b"{")).startswith("the arguments are not valid JSON")
    assert str(refusal(b'{"note": "\xff"}')).startswith("the arguments are not valid JSON")


def test_odd_keys_are_quoted_in_paths() -> None:
    declared = record(**{"odd key": (LONG, False)})
    assert refusal(b'{"odd key": 1.5}', EVERYTHING, declared).path == '$["odd key"]'


def test_entity_and_extension_types_are_never_guessed() -> None:
    with pytest.raises(ArgumentsNotMappable, match="no JSON value maps to"):
        to_cedar("10.0.0.1", Named("ipaddr"), "$.ip")
