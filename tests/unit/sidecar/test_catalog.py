"""sidecar.catalog: the capability default timeout callers without a deadline get, and
batches of changes from the watch stream."""

from __future__ import annotations

from meshwarden.v1 import registry_pb2
from tests.unit.sidecar.fakes import catalog_of, instance


def test_the_longest_declared_default_timeout_of_the_live_instances_applies() -> None:
    old, new, silent = (
        instance("a", "billing", "1.0.0"),
        instance("b", "billing", "2.0.0"),
        instance("c", "kb", "1.0.0"),
    )
    old.capabilities[0].default_timeout_ms = 1500
    new.capabilities[0].default_timeout_ms = 4000
    silent.capabilities[0].name = "kb.search"
    catalog = catalog_of(old, new, silent)
    assert catalog.default_timeout_s("billing.refund") == 4.0
    assert catalog.default_timeout_s("kb.search") == 0.0  # none declared: the sidecar's default
    assert catalog.default_timeout_s("unknown") == 0.0


def test_a_batch_of_changes_applies_each_in_order_and_ends_at_its_revision() -> None:
    catalog = catalog_of(instance("a", "billing", "1.0.0"), revision=1)
    replaced = instance("a", "billing", "2.0.0")
    batch = registry_pb2.WatchEvent(
        revision=4,
        changes=registry_pb2.CatalogChanges(
            events=[
                registry_pb2.WatchEvent(revision=2, upserted=instance("b", "billing", "1.0.0")),
                registry_pb2.WatchEvent(revision=3, upserted=replaced),
                registry_pb2.WatchEvent(revision=4, removed=registry_pb2.InstanceRemoved(instance_id="b")),
            ]
        ),
    )
    catalog.apply(batch)
    assert catalog.revision == 4
    assert [(i.instance_id, i.version) for i in catalog.instances()] == [("a", "2.0.0")]
    assert [str(e.version) for e in catalog.endpoints("billing.refund")] == ["2.0.0"]
