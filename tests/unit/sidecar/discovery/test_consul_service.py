"""The Consul service definition of an instance and its reading back: Meta within Consul's
limits (64 keys, keys of 1-128 [A-Za-z0-9_-], values up to 512), schemas by hash."""

from __future__ import annotations

import json

import pytest

from meshwarden.sidecar.discovery.consul_api import ServiceEntry, TtlCheck
from meshwarden.sidecar.discovery.consul_service import (
    MAX_META_KEYS,
    MAX_META_VALUE_LENGTH,
    META_KEY,
    InvalidEntry,
    MetaTooLarge,
    MissingSchema,
    SchemaPair,
    decode_capabilities,
    encode_capabilities,
    instance_from_entry,
    read_schema_document,
    schema_document,
    schema_key,
    service_definition,
)
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.v1 import catalog_pb2

TD = "meshwarden.local"
SCHEMA = json.dumps({"type": "object", "properties": {"n": {"type": "integer"}}})
CHECK = TtlCheck("meshwarden:billing-1", "check", 10.0, 60.0, "passing")


def billing(*capabilities: str) -> LocalAgent:
    local = LocalAgent("billing", "billing-1", "10.0.0.7:7411", f"spiffe://{TD}/agent/billing")
    local.register("2.4.0", [catalog_pb2.Capability(name=c, input_schema_json=SCHEMA) for c in capabilities])
    return local


def test_definition_carries_name_id_peer_tag_and_meta_within_limits() -> None:
    local = billing("billing.refund", "billing.quote")
    assert local.registration is not None
    definition = service_definition(local, local.registration, CHECK)
    assert (definition.name, definition.service_id, definition.address, definition.port) == (
        "billing",
        "billing-1",
        "10.0.0.7",
        7411,
    )
    assert definition.tags == ("meshwarden",)
    meta = definition.meta
    assert meta["meshwarden-version"] == "2.4.0"
    assert meta["meshwarden-spiffe-id"] == f"spiffe://{TD}/agent/billing"
    assert meta["meshwarden-peer-address"] == "10.0.0.7:7411"
    assert all(META_KEY.fullmatch(k) and not k.startswith("consul-") for k in meta)
    assert all(len(v) <= MAX_META_VALUE_LENGTH for v in meta.values())
    hashes = {s.name: s.schema_hash for s in local.registration.capabilities.values()}
    assert dict(decode_capabilities(meta)) == hashes


def test_many_capabilities_are_packed_into_few_keys_and_too_many_are_refused_by_name() -> None:
    digest = "sha256:" + "ab" * 32
    many = [(f"tool.{n:03d}", digest) for n in range(250)]
    meta = encode_capabilities(many)
    assert len(meta) + 3 <= MAX_META_KEYS and all(len(v) <= MAX_META_VALUE_LENGTH for v in meta.values())
    assert decode_capabilities(meta) == sorted(many)
    with pytest.raises(MetaTooLarge, match="Meta keys"):
        encode_capabilities([(f"a-rather-long-capability-name-for-tool-number.{n:04d}", digest) for n in range(600)])


def test_truncated_or_malformed_capability_meta_is_refused() -> None:
    meta = encode_capabilities([("a", "sha256:" + "0" * 64), ("b", "sha256:" + "1" * 64)])
    with pytest.raises(InvalidEntry, match="says 3"):
        decode_capabilities({**meta, "meshwarden-capabilities": "3"})
    with pytest.raises(InvalidEntry, match="not name=sha256"):
        decode_capabilities({**meta, "meshwarden-caps-0": "a=md5:00"})


def test_schema_documents_are_checked_against_their_hash() -> None:
    local = billing("billing.refund")
    assert local.registration is not None
    spec = local.registration.capabilities["billing.refund"]
    assert schema_key(spec.schema_hash) == "meshwarden/schemas/" + spec.schema_hash.removeprefix("sha256:")
    pair = read_schema_document(spec.schema_hash, schema_document(spec))
    assert pair == SchemaPair(SCHEMA, "")
    forged = json.dumps({"input_schema_json": '{"type": "string"}', "output_schema_json": ""}).encode()
    with pytest.raises(InvalidEntry, match="hashes to"):
        read_schema_document(spec.schema_hash, forged)
    with pytest.raises(InvalidEntry, match="unreadable"):
        read_schema_document(spec.schema_hash, b"not json")


def entry_for(local: LocalAgent, **meta_overrides: str) -> ServiceEntry:
    assert local.registration is not None
    definition = service_definition(local, local.registration, CHECK)
    return ServiceEntry(
        definition.service_id,
        definition.name,
        definition.address,
        definition.port,
        definition.tags,
        {**definition.meta, **meta_overrides},
    )


def test_an_entry_becomes_the_catalog_instance_with_its_schemas() -> None:
    local = billing("billing.refund")
    assert local.registration is not None
    spec = local.registration.capabilities["billing.refund"]
    schemas = {spec.schema_hash: SchemaPair(SCHEMA, "")}
    instance = instance_from_entry(entry_for(local), TD, schemas)
    assert (instance.instance_id, instance.agent, instance.version) == ("billing-1", "billing", "2.4.0")
    assert (instance.peer_address, instance.spiffe_id) == ("10.0.0.7:7411", f"spiffe://{TD}/agent/billing")
    assert [(c.name, c.schema_hash, c.input_schema_json) for c in instance.capabilities] == [
        ("billing.refund", spec.schema_hash, SCHEMA)
    ]
    with pytest.raises(MissingSchema):
        instance_from_entry(entry_for(local), TD, {})


def test_an_entry_claiming_another_agent_s_identity_is_refused() -> None:
    local = billing("billing.refund")
    with pytest.raises(InvalidEntry, match="only spiffe://meshwarden.local/agent/billing may serve as billing"):
        instance_from_entry(entry_for(local, **{"meshwarden-spiffe-id": f"spiffe://{TD}/agent/mallory"}), TD, {})
    with pytest.raises(InvalidEntry, match="may serve"):
        instance_from_entry(entry_for(local), "other.domain", {})
