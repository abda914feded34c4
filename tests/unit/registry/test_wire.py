"""registry.wire: proto <-> domain conversion keeps every field, timestamps to the microsecond."""

from __future__ import annotations

from meshwarden.registry.model import Capability, Instance, Removed, Snapshot, Upserted
from meshwarden.registry.wire import event_to_proto, instance_to_proto, snapshot_to_proto, spec_from_proto
from meshwarden.v1 import catalog_pb2

CAPABILITY = Capability(
    name="billing.refund",
    input_schema_json='{"type":"object"}',
    output_schema_json='{"type":"integer"}',
    schema_hash="sha256:" + "d" * 64,
    description="refunds an order",
)
INSTANCE = Instance(
    instance_id="abc123def456",
    agent="billing",
    version="2.3.1",
    peer_address="10.0.0.5:7411",
    capabilities=(CAPABILITY,),
    spiffe_id="spiffe://mesh.local/agent/billing",
    registered_at=1_700_000_000.25,
    lease_expires_at=1_700_000_005.125,
)


def test_instance_to_proto_and_back_to_a_spec() -> None:
    message = instance_to_proto(INSTANCE)
    assert message.registered_at.ToJsonString() == "2023-11-14T22:13:20.250Z"
    assert message.lease_expires_at.ToNanoseconds() == 1_700_000_005_125_000_000
    spec = spec_from_proto(message)
    assert spec.instance_id == INSTANCE.instance_id
    assert (spec.agent, spec.version, spec.peer_address, spec.spiffe_id) == (
        "billing",
        "2.3.1",
        "10.0.0.5:7411",
        "spiffe://mesh.local/agent/billing",
    )
    assert spec.capabilities == (CAPABILITY,)


def test_spec_from_an_empty_message_has_empty_fields() -> None:
    spec = spec_from_proto(catalog_pb2.Instance())
    assert spec.instance_id == "" and spec.agent == "" and spec.capabilities == ()


def test_events_and_snapshots() -> None:
    upserted = event_to_proto(Upserted(revision=7, instance=INSTANCE))
    assert upserted.revision == 7 and upserted.WhichOneof("change") == "upserted"
    assert upserted.upserted.instance_id == INSTANCE.instance_id
    removed = event_to_proto(Removed(revision=8, instance_id="abc123def456", reason="lease_expired"))
    assert removed.WhichOneof("change") == "removed"
    assert (removed.removed.instance_id, removed.removed.reason) == ("abc123def456", "lease_expired")
    snapshot = snapshot_to_proto(Snapshot(revision=9, instances=(INSTANCE,)))
    assert snapshot.revision == 9 and snapshot.WhichOneof("change") == "snapshot"
    assert [i.agent for i in snapshot.snapshot.instances] == ["billing"]
    empty = snapshot_to_proto(Snapshot(revision=0, instances=()))
    assert empty.WhichOneof("change") == "snapshot"  # an empty catalog is still a snapshot
