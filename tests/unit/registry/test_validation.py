"""registry.validation: each rule refuses with a message naming the field."""

from __future__ import annotations

import dataclasses

import pytest

from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.model import Capability, InstanceSpec
from meshwarden.registry.validation import validate_spec
from meshwarden.schema_hash import schema_hash

HASH = schema_hash({"type": "object"}, {})


def _capability(**changes: str) -> Capability:
    base = Capability(name="billing.refund", input_schema_json='{"type":"object"}', schema_hash=HASH)
    return dataclasses.replace(base, **changes)


def _spec(**changes: object) -> InstanceSpec:
    base = InstanceSpec(
        agent="billing",
        version="2.3.1",
        peer_address="127.0.0.1:7411",
        capabilities=(_capability(),),
        spiffe_id="spiffe://mesh.local/agent/billing",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_well_formed_spec_passes() -> None:
    validate_spec(_spec())
    validate_spec(_spec(instance_id="host-1.billing_0", spiffe_id="", capabilities=()))
    validate_spec(_spec(agent="a" * 63, instance_id="a" * 63 + "-0123abcd"))  # the sidecar's default id form
    validate_spec(_spec(version="1.0.0-rc.1+build.5", peer_address="[::1]:7411"))
    any_in_true_out = _capability(input_schema_json="", output_schema_json="true", schema_hash=schema_hash({}, True))
    validate_spec(_spec(capabilities=(any_in_true_out,)))


@pytest.mark.parametrize(
    ("changes", "field", "detail"),
    [
        ({"agent": "Billing"}, "instance.agent", "'Billing'"),
        ({"agent": ""}, "instance.agent", "1-63 characters"),
        ({"agent": "a" * 64}, "instance.agent", "1-63 characters"),
        ({"agent": "-billing"}, "instance.agent", "'-billing'"),
        ({"version": "2.3"}, "instance.version", "semantic version"),
        ({"version": ""}, "instance.version", "semantic version"),
        ({"peer_address": "localhost"}, "instance.peer_address", "HOST:PORT"),
        ({"peer_address": "127.0.0.1:0"}, "instance.peer_address", "not 0"),
        ({"peer_address": "127.0.0.1:99999"}, "instance.peer_address", "0 to 65535"),
        ({"instance_id": "has space"}, "instance.instance_id", "'has space'"),
        ({"instance_id": "i" * 129}, "instance.instance_id", "must be empty or match"),
        ({"spiffe_id": "billing"}, "instance.spiffe_id", "spiffe://"),
    ],
)
def test_instance_fields_are_checked(changes: dict[str, object], field: str, detail: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_spec(_spec(**changes))
    assert info.value.field == field
    assert str(info.value).startswith(field + " ")
    assert detail in str(info.value)


@pytest.mark.parametrize(
    ("changes", "field", "detail"),
    [
        ({"name": "Billing.Refund"}, "instance.capabilities[1].name", "'Billing.Refund'"),
        ({"name": "x" * 129}, "instance.capabilities[1].name", "1-128 characters"),
        ({"name": ""}, "instance.capabilities[1].name", "1-128 characters"),
        ({"input_schema_json": "{not json"}, "instance.capabilities[1].input_schema_json", "not valid JSON"),
        ({"output_schema_json": "[1, 2]"}, "instance.capabilities[1].output_schema_json", "an array"),
        ({"schema_hash": ""}, "instance.capabilities[1].schema_hash", "is required"),
        ({"schema_hash": "sha256:abc"}, "instance.capabilities[1].schema_hash", "64"),
        ({"schema_hash": "md5:" + "0" * 64}, "instance.capabilities[1].schema_hash", "sha256:"),
        ({"schema_hash": HASH.upper()}, "instance.capabilities[1].schema_hash", "lowercase"),
        ({"schema_hash": "sha256:" + "0" * 64}, "instance.capabilities[1].schema_hash", f"hash to {HASH}"),
        ({"output_schema_json": '{"type":"string"}'}, "instance.capabilities[1].schema_hash", "does not match"),
    ],
)
def test_capability_fields_are_checked_with_their_index(changes: dict[str, str], field: str, detail: str) -> None:
    spec = _spec(capabilities=(_capability(name="billing.quote"), _capability(**changes)))
    with pytest.raises(InvalidInput) as info:
        validate_spec(spec)
    assert info.value.field == field
    assert detail in str(info.value)


def test_duplicate_capability_names_are_refused_naming_both() -> None:
    spec = _spec(capabilities=(_capability(), _capability(name="billing.quote"), _capability()))
    with pytest.raises(InvalidInput) as info:
        validate_spec(spec)
    assert info.value.field == "instance.capabilities[2].name"
    assert "duplicates instance.capabilities[0]" in str(info.value)


def test_long_values_are_shortened_in_messages() -> None:
    with pytest.raises(InvalidInput) as info:
        validate_spec(_spec(agent="A" * 5000))
    assert len(str(info.value)) < 300


def test_schemas_and_versions_that_passed_once_are_still_checked_against_each_request() -> None:
    validate_spec(_spec())  # remembered: these schemas hash to HASH, and 2.3.1 is a version
    other = schema_hash({"type": "string"}, {})
    with pytest.raises(InvalidInput, match=r"capabilities\[0\]\.schema_hash.*does not match"):
        validate_spec(_spec(capabilities=(_capability(schema_hash=other),)))
    with pytest.raises(InvalidInput, match=r"capabilities\[0\]\.output_schema_json.*not valid JSON"):
        validate_spec(_spec(capabilities=(_capability(output_schema_json="{"),)))
    big = '{"description": "' + "x" * 20_000 + '"}'  # beyond what is remembered: checked all the same
    with pytest.raises(InvalidInput, match="does not match"):
        validate_spec(_spec(capabilities=(_capability(input_schema_json=big),)))
    with pytest.raises(InvalidInput, match="semantic version"):
        validate_spec(_spec(version="2.3"))
