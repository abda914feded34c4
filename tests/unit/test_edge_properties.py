"""Property tests of every parser that reads outside input: whatever arrives, each either
answers or raises its own typed refusal; nothing else escapes (no RecursionError, no
KeyError, no traceback for a person to read), and nothing hangs (hypothesis' deadline).

The edges as processes (local, peer and agent APIs over real sockets) are in
tests/integration/test_edge_properties.py; these are the functions behind them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip(
    "hypothesis", reason="hypothesis (the test extra) is not installed: regenerate the lock (python3 dev.py lock)"
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshwarden import identifiers, strict_json
from meshwarden.errors import BadPayload
from meshwarden.policy_bundle.artifact import decode, encode, unsigned
from meshwarden.policy_bundle.errors import BundleError
from meshwarden.policy_bundle.keys import keygen, load_private_key, load_public_key
from meshwarden.policy_bundle.manifest import parse_manifest
from meshwarden.policy_bundle.sign import sign
from meshwarden.policy_bundle.verify import verify
from meshwarden.receipt_signing import HeadSignatureError, check_head
from meshwarden.registry.errors import RegistryError
from meshwarden.registry.issuer import Issuer
from meshwarden.registry.receipt_chain import check_batch
from meshwarden.sidecar.policy.cedar_values import ArgumentsNotMappable, parse_arguments
from meshwarden.sidecar.schemas import parse_payload
from meshwarden.status_message import MAX_STATUS_MESSAGE_BYTES, fit
from meshwarden.v1 import receipts_pb2
from tests.unit.sidecar.fakes import FakeClock

FAST = settings(max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
# JSON-looking bytes: real documents, cut, spliced with the constants Python's json accepts.
json_like = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.tuples(json_values, st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"[" * 200, b"\xff"])).map(
        lambda t: json.dumps(t[0]).encode()[:-1] + t[1]
    ),
)


@FAST
@given(json_like)
def test_strict_json_answers_or_says_why(data: bytes) -> None:
    try:
        value = strict_json.loads(data)
    except ValueError:
        return
    json.dumps(value, allow_nan=False)  # what it accepts is JSON again: no NaN, no infinity


@FAST
@given(json_values)
def test_strict_json_reads_every_json_document(value: Any) -> None:
    assert strict_json.loads(json.dumps(value).encode()) == value


@FAST
@given(json_like, st.text(max_size=40))
def test_payload_parsing_refuses_only_with_bad_payload(data: bytes, capability: str) -> None:
    try:
        parse_payload(data, capability)
    except BadPayload as exc:
        assert len(exc.message.encode()) <= MAX_STATUS_MESSAGE_BYTES


@FAST
@given(json_like)
def test_cedar_value_mapping_refuses_only_as_not_mappable(data: bytes) -> None:
    try:
        assert isinstance(parse_arguments(data), dict)
    except ArgumentsNotMappable:
        pass


@FAST
@given(st.sampled_from(sorted(identifiers.LIMITS)), st.text(max_size=300))
def test_an_accepted_identifier_is_short_and_printable(field: str, value: str) -> None:
    problem = identifiers.identifier_problem(field, value)
    if problem is None:
        assert len(value) <= identifiers.LIMITS[field] and value.isprintable()
    else:
        assert problem.isprintable() and len(problem) < 300


@FAST
@given(st.text(max_size=20_000))
def test_a_status_message_always_fits(message: str) -> None:
    assert len(fit(message).encode()) <= MAX_STATUS_MESSAGE_BYTES


@FAST
@given(st.text(max_size=500))
def test_a_manifest_parses_or_lists_its_problems(text: str) -> None:
    try:
        parse_manifest(text)
    except BundleError:
        pass


@pytest.fixture(scope="module")
def signed_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[str, Any]]:
    keys = keygen(tmp_path_factory.mktemp("keys"), "k1")
    files = {
        "manifest.toml": 'name = "demo"\nrevision = 3\n',
        "schema.cedarschema": "",
        "entities.json": "[]",
        "policies/a.cedar": "permit (principal, action, resource);\n",
    }
    raw = sign(encode(unsigned(files)), load_private_key(keys.private_key), "k1")
    return raw, {"k1": load_public_key(keys.public_key)}


@FAST
@given(st.data())
def test_a_bundle_artifact_changed_anywhere_verifies_or_is_refused(
    signed_bundle: tuple[bytes, dict[str, Any]], data: st.DataObject
) -> None:
    raw, keys = signed_bundle
    at = data.draw(st.integers(0, len(raw)))
    cut = data.draw(st.integers(0, 8))
    inserted = data.draw(st.binary(max_size=8))
    changed = raw[:at] + inserted + raw[at + cut :]
    try:
        verify(changed, keys)
    except BundleError:
        return
    assert decode(changed).files == decode(raw).files  # only a change that alters nothing passes


receipt_fields = st.fixed_dictionaries(
    {
        "sidecar_instance_id": st.text(max_size=10),
        "sidecar_spiffe_id": st.sampled_from(["spiffe://t/agent/a", "", "x"]),
        "seq": st.integers(0, 2**64 - 1),
        "prev_hash": st.text(max_size=10),
        "hash": st.text(max_size=10),
        "direction": st.sampled_from(["outbound", "inbound", "", "sideways"]),
        "caller_spiffe_id": st.sampled_from(["spiffe://t/agent/a", "spiffe://t/agent/b", ""]),
        "caller_agent": st.sampled_from(["a", "b", ""]),
        "callee_spiffe_id": st.sampled_from(["spiffe://t/agent/a", ""]),
        "callee_agent": st.sampled_from(["a", ""]),
    }
)


@FAST
@given(st.lists(receipt_fields, max_size=4))
def test_a_shipped_batch_is_refused_only_with_a_registry_error(batch: list[dict[str, Any]]) -> None:
    try:
        check_batch("spiffe://t/agent/a", [receipts_pb2.Receipt(**fields) for fields in batch])
    except RegistryError:
        pass


ISSUER = Issuer.ephemeral("t", FakeClock())


@FAST
@given(
    st.text(max_size=10),
    st.integers(0, 2**64 - 1),
    st.text(max_size=10),
    st.binary(max_size=80),
    st.lists(st.binary(max_size=60), max_size=5),
)
def test_a_signed_head_checks_out_or_is_refused(
    instance: str, seq: int, hash_: str, signature: bytes, chain: list[bytes]
) -> None:
    head = receipts_pb2.SignedHead(
        sidecar_instance_id=instance, seq=seq, hash=hash_, signature=signature, certificate_chain=chain
    )
    with pytest.raises(HeadSignatureError):
        check_head(head, ISSUER.bundle_pem)
