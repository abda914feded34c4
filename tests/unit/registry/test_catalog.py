"""registry.catalog over a real Store in tmp_path, with a fake clock and a recording publisher."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from meshwarden.registry.catalog import Catalog
from meshwarden.registry.errors import InvalidInput, UnknownInstance
from meshwarden.registry.model import (
    DEREGISTERED,
    LEASE_EXPIRED,
    Capability,
    CatalogEvent,
    InstanceSpec,
    Removed,
    Upserted,
)
from meshwarden.registry.store import Store

TTL_S = 5.0
HASH = "sha256:" + "ab" * 32


class FakeClock:
    def __init__(self, wall: float = 1_700_000_000.0) -> None:
        self.now = wall

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now


def _spec(
    agent: str = "billing", *, instance_id: str = "", capabilities: tuple[str, ...] = ("billing.refund",)
) -> InstanceSpec:
    return InstanceSpec(
        instance_id=instance_id,
        agent=agent,
        version="1.0.0",
        peer_address="127.0.0.1:7411",
        capabilities=tuple(Capability(name=name, schema_hash=HASH) for name in capabilities),
    )


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock()
        self.published: list[CatalogEvent] = []
        self.store = Store.open(tmp_path, event_log_retention=1000)
        self.catalog = Catalog(self.store, self.clock, lease_ttl_s=TTL_S, publish=self.published.append)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.store.close()


def test_register_assigns_a_unique_hex_id_and_a_lease(h: Harness) -> None:
    first = h.catalog.register(_spec())
    second = h.catalog.register(_spec())
    assert len(first.instance.instance_id) == 12 and int(first.instance.instance_id, 16) >= 0
    assert first.instance.instance_id != second.instance.instance_id
    assert first.instance.registered_at == h.clock.now
    assert first.instance.lease_expires_at == h.clock.now + TTL_S
    assert (first.revision, second.revision) == (1, 2)


def test_each_change_is_stored_then_published_once_with_its_revision(h: Harness) -> None:
    a = h.catalog.register(_spec()).instance.instance_id
    h.catalog.register(_spec("search", capabilities=("search.web",)))
    h.catalog.deregister(a)
    assert [e.revision for e in h.published] == [1, 2, 3]
    assert h.store.events_after(0) == h.published
    assert h.published[2] == Removed(revision=3, instance_id=a, reason=DEREGISTERED)


def test_registering_a_known_id_replaces_it_and_keeps_registered_at(h: Harness) -> None:
    first = h.catalog.register(_spec(instance_id="sidecar-1"))
    h.clock.now += 2
    again = h.catalog.register(_spec(instance_id="sidecar-1", capabilities=("billing.refund", "billing.quote")))
    assert again.instance.registered_at == first.instance.registered_at
    assert again.instance.lease_expires_at == h.clock.now + TTL_S
    listed = h.catalog.list_instances().instances
    assert [i.instance_id for i in listed] == ["sidecar-1"]
    assert [c.name for c in listed[0].capabilities] == ["billing.refund", "billing.quote"]


def test_invalid_input_changes_nothing(h: Harness) -> None:
    with pytest.raises(InvalidInput, match="instance.version"):
        h.catalog.register(InstanceSpec(agent="billing", version="one", peer_address="127.0.0.1:1"))
    assert h.catalog.revision == 0 and h.published == [] and h.store.instances() == []


def test_renew_extends_the_lease_without_a_catalog_change(h: Harness) -> None:
    instance_id = h.catalog.register(_spec()).instance.instance_id
    h.clock.now += 3
    expires_at = h.catalog.renew(instance_id)
    assert expires_at == h.clock.now + TTL_S
    stored = h.store.instance(instance_id)
    assert stored is not None and stored.lease_expires_at == expires_at
    assert h.catalog.revision == 1 and len(h.published) == 1


def test_the_svid_expiry_is_kept_at_register_and_moved_by_renew_without_an_event(h: Harness) -> None:
    registered = h.catalog.register(replace(_spec(), svid_expires_at=h.clock.now + 100)).instance
    assert registered.svid_expires_at == h.clock.now + 100
    h.catalog.renew(registered.instance_id, svid_expires_at=h.clock.now + 200)
    assert h.catalog.instance(registered.instance_id) == replace(
        registered, svid_expires_at=h.clock.now + 200, lease_expires_at=h.clock.now + TTL_S
    )
    h.catalog.renew(registered.instance_id)  # no SVID expiry given: kept
    stored = h.catalog.instance(registered.instance_id)
    assert stored is not None and stored.svid_expires_at == h.clock.now + 200
    assert len(h.published) == 1


def test_renew_of_an_unknown_id_is_unknown_instance(h: Harness) -> None:
    with pytest.raises(UnknownInstance, match="register again"):
        h.catalog.renew("nope")
    with pytest.raises(InvalidInput, match="instance_id is required"):
        h.catalog.renew("")


def test_renew_after_the_lease_expired_removes_the_instance(h: Harness) -> None:
    instance_id = h.catalog.register(_spec()).instance.instance_id
    h.clock.now += TTL_S
    with pytest.raises(UnknownInstance):
        h.catalog.renew(instance_id)
    assert h.published[-1] == Removed(revision=2, instance_id=instance_id, reason=LEASE_EXPIRED)
    assert h.store.instance(instance_id) is None


def test_deregister_is_idempotent(h: Harness) -> None:
    instance_id = h.catalog.register(_spec()).instance.instance_id
    assert h.catalog.deregister(instance_id) == 2
    assert h.catalog.deregister(instance_id) == 2
    assert len(h.published) == 2


def test_expire_leases_removes_only_expired_instances(h: Harness) -> None:
    old = h.catalog.register(_spec()).instance.instance_id
    h.clock.now += 3
    young = h.catalog.register(_spec()).instance.instance_id
    h.clock.now += 2.5  # old is 5.5 s past its lease start, young 2.5 s
    assert h.catalog.expire_leases() == [old]
    assert [i.instance_id for i in h.catalog.list_instances().instances] == [young]
    assert h.published[-1] == Removed(revision=3, instance_id=old, reason=LEASE_EXPIRED)
    assert h.catalog.expire_leases() == []


def test_seconds_until_next_expiry(h: Harness) -> None:
    assert h.catalog.seconds_until_next_expiry() is None
    h.catalog.register(_spec())
    h.clock.now += 1
    assert h.catalog.seconds_until_next_expiry() == pytest.approx(TTL_S - 1)
    h.clock.now += 10
    assert h.catalog.seconds_until_next_expiry() == 0.0


def test_extend_all_leases_gives_a_full_ttl_from_now(h: Harness) -> None:
    instance_id = h.catalog.register(_spec()).instance.instance_id
    h.clock.now += 100  # the registry was down for a while
    assert h.catalog.extend_all_leases() == 1
    assert h.catalog.expire_leases() == []
    stored = h.store.instance(instance_id)
    assert stored is not None and stored.lease_expires_at == h.clock.now + TTL_S


def test_list_filters_by_agent_and_capability(h: Harness) -> None:
    h.catalog.register(_spec("billing", capabilities=("billing.refund", "billing.quote")))
    h.catalog.register(_spec("search", capabilities=("search.web",)))
    h.catalog.register(_spec("quotes", capabilities=("billing.quote",)))

    def agents(**filters: str) -> list[str]:
        return sorted(i.agent for i in h.catalog.list_instances(**filters).instances)

    assert agents() == ["billing", "quotes", "search"]
    assert agents(agent="search") == ["search"]
    assert agents(capability="billing.quote") == ["billing", "quotes"]
    assert agents(agent="billing", capability="search.web") == []
    assert h.catalog.list_instances().revision == 3
    with pytest.raises(InvalidInput, match="^agent must be 1-63 characters"):
        h.catalog.list_instances(agent="Bad Name")
    with pytest.raises(InvalidInput, match="^capability must be 1-128 characters"):
        h.catalog.list_instances(capability="Bad Name")


def test_snapshot_and_events_after_agree(h: Harness) -> None:
    a = h.catalog.register(_spec()).instance.instance_id
    b = h.catalog.register(_spec("search")).instance.instance_id
    h.catalog.deregister(a)
    snapshot = h.catalog.snapshot()
    assert snapshot.revision == 3
    assert [i.instance_id for i in snapshot.instances] == [b]
    missed = h.catalog.events_after(1)
    assert missed is not None
    assert [type(e) for e in missed] == [Upserted, Removed]
    assert h.catalog.events_after(4) is None
