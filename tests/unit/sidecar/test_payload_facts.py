"""A call's payload is parsed and hashed at most once, whichever stages read it, and every
stage sees the same answer (value or refusal) as parsing the bytes itself would give."""

from __future__ import annotations

from dataclasses import replace

import pytest

from meshwarden import strict_json
from meshwarden.receipt_hash import payload_digest
from meshwarden.sidecar.policy.cedar_values import ArgumentsNotMappable, parse_arguments
from tests.unit.sidecar.fakes import call


def test_the_digest_is_the_receipts_and_is_shared_by_every_copy_of_the_call() -> None:
    first = call(payload=b'{"amount": 50}')
    digest = first.payload_sha256
    assert digest == payload_digest(b'{"amount": 50}')
    assert replace(first, attempt=2).payload_sha256 is digest  # worked out once, not again


def test_the_parsed_value_is_strict_json_and_parsed_once() -> None:
    first = call(payload=b'{"amount": 50, "items": [1, 2]}')
    value = first.payload_value
    assert value == strict_json.loads(b'{"amount": 50, "items": [1, 2]}')
    assert replace(first, attempt=2).payload_value is value


@pytest.mark.parametrize("payload", [b'{"x": NaN}', b'{"x": 1e400}', b"[" * 65 + b"]" * 65, b"\xff", b"{x"])
def test_a_refusal_is_the_same_as_strict_json_gives_and_is_kept(payload: bytes) -> None:
    with pytest.raises(ValueError) as direct:
        strict_json.loads(payload)
    refused = call(payload=payload)
    with pytest.raises(ValueError) as first:
        _ = refused.payload_value
    with pytest.raises(ValueError) as again:
        _ = replace(refused, attempt=2).payload_value
    assert str(first.value) == str(direct.value)
    assert again.value is first.value


def test_cedar_arguments_are_parse_arguments_and_parsed_once() -> None:
    first = call(payload=b'{"amount": 12.5}')
    arguments = first.cedar_arguments()
    assert arguments == parse_arguments(b'{"amount": 12.5}')
    assert replace(first, attempt=2).cedar_arguments() is arguments
    repeated = call(payload=b'{"a": 1, "a": 2}')
    with pytest.raises(ArgumentsNotMappable) as info:
        _ = repeated.cedar_arguments()
    with pytest.raises(ArgumentsNotMappable) as again:
        _ = repeated.cedar_arguments()
    assert again.value is info.value and "appears twice" in str(info.value)


def test_a_replaced_payload_is_parsed_and_hashed_afresh() -> None:
    first = call(payload=b'{"amount": 50}')
    assert first.payload_value == {"amount": 50}
    changed = replace(first, payload=b'{"amount": 7}')
    assert changed.payload_value == {"amount": 7}
    assert changed.payload_sha256 == payload_digest(b'{"amount": 7}')
    assert first.payload_value == {"amount": 50}  # the original still answers for its own bytes
