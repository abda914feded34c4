"""registry.catalog over the real SQLite stores in tmp_path, with a fake clock and a recording publisher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from meshwarden.identity.spiffe_ids import Identity, agent_id
from meshwarden.registry.authz import Caller
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.errors import InvalidInput, PermissionDenied, UnknownInstance
from meshwarden.registry.model import (
    DEREGISTERED,
    JOIN_TOKEN,
    LEASE_EXPIRED,
    NOT_RECORDED,
    Capability,
    CatalogEvent,
    Enrolment,
    Instance,
    InstanceSpec,
    Removed,
    Upserted,
)
from meshwarden.registry.store import Stores
from meshwarden.registry.store.sqlite import open_sqlite
from meshwarden.registry.wire import spec_from_proto
from meshwarden.schema_hash import schema_hash
from meshwarden.v1 import catalog_pb2

TTL_S = 5.0
HASH = schema_hash({}, {})


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


def _caller(agent: str, svid_expires_at: float = 0.0) -> Caller:
    spiffe_id = agent_id("mesh.test", agent)
    identity = Identity(spiffe_id=spiffe_id, trust_domain="mesh.test", kind="agent", name=agent)
    return Caller(identity, svid_expires_at, operator=False, sent_bad_operator_token=False, peer="test")


class Harness:
    def __init__(self, stores: Stores) -> None:
        self.clock = FakeClock()
        self.published: list[CatalogEvent] = []
        self.store = stores.catalog
        self.catalog = Catalog(
            stores.catalog, stores.leases, self.clock, lease_ttl_s=TTL_S, publish=self.published.append
        )


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    stores = await open_sqlite(tmp_path, event_log_retention=1000)
    yield Harness(stores)
    await stores.close()


async def test_register_assigns_a_unique_hex_id_and_a_lease(h: Harness) -> None:
    first = await h.catalog.register(_spec())
    second = await h.catalog.register(_spec())
    assert len(first.instance.instance_id) == 12 and int(first.instance.instance_id, 16) >= 0
    assert first.instance.instance_id != second.instance.instance_id
    assert first.instance.registered_at == h.clock.now
    assert first.instance.lease_expires_at == h.clock.now + TTL_S
    assert (first.revision, second.revision) == (1, 2)


async def test_each_change_is_stored_then_published_once_with_its_revision(h: Harness) -> None:
    a = (await h.catalog.register(_spec())).instance.instance_id
    await h.catalog.register(_spec("search", capabilities=("search.web",)))
    await h.catalog.deregister(a)
    assert [e.revision for e in h.published] == [1, 2, 3]
    assert await h.store.events_after(0) == h.published
    assert h.published[2] == Removed(revision=3, instance_id=a, reason=DEREGISTERED)


async def test_registering_a_known_id_replaces_it_and_keeps_registered_at(h: Harness) -> None:
    first = await h.catalog.register(_spec(instance_id="sidecar-1"))
    h.clock.now += 2
    again = await h.catalog.register(_spec(instance_id="sidecar-1", capabilities=("billing.refund", "billing.quote")))
    assert again.instance.registered_at == first.instance.registered_at
    assert again.instance.lease_expires_at == h.clock.now + TTL_S
    listed = (await h.catalog.list_instances()).instances
    assert [i.instance_id for i in listed] == ["sidecar-1"]
    assert [c.name for c in listed[0].capabilities] == ["billing.refund", "billing.quote"]


async def test_invalid_input_changes_nothing(h: Harness) -> None:
    with pytest.raises(InvalidInput, match="instance.version"):
        await h.catalog.register(InstanceSpec(agent="billing", version="one", peer_address="127.0.0.1:1"))
    assert h.catalog.revision == 0 and h.published == [] and (await h.store.snapshot()).instances == ()


async def test_renew_extends_the_lease_without_a_catalog_change(h: Harness) -> None:
    instance_id = (await h.catalog.register(_spec())).instance.instance_id
    h.clock.now += 3
    expires_at = await h.catalog.renew(instance_id)
    assert expires_at == h.clock.now + TTL_S
    stored = await h.store.instance(instance_id)
    assert stored is not None and stored.lease_expires_at == expires_at
    assert h.catalog.revision == 1 and len(h.published) == 1


async def test_the_svid_expiry_is_kept_at_register_and_moved_by_renew_without_an_event(h: Harness) -> None:
    registered = (await h.catalog.register(replace(_spec(), svid_expires_at=h.clock.now + 100))).instance
    assert registered.svid_expires_at == h.clock.now + 100
    await h.catalog.renew(registered.instance_id, _caller("billing", svid_expires_at=h.clock.now + 200))
    assert await h.catalog.instance(registered.instance_id) == replace(
        registered, svid_expires_at=h.clock.now + 200, lease_expires_at=h.clock.now + TTL_S
    )
    await h.catalog.renew(registered.instance_id)  # no caller, so no SVID expiry given: kept
    stored = await h.catalog.instance(registered.instance_id)
    assert stored is not None and stored.svid_expires_at == h.clock.now + 200
    assert len(h.published) == 1


async def test_renew_of_an_unknown_id_is_unknown_instance(h: Harness) -> None:
    with pytest.raises(UnknownInstance, match="register again"):
        await h.catalog.renew("nope")
    with pytest.raises(InvalidInput, match="instance_id is required"):
        await h.catalog.renew("")


async def test_renew_after_the_lease_expired_removes_the_instance(h: Harness) -> None:
    instance_id = (await h.catalog.register(_spec())).instance.instance_id
    h.clock.now += TTL_S
    with pytest.raises(UnknownInstance):
        await h.catalog.renew(instance_id)
    assert h.published[-1] == Removed(revision=2, instance_id=instance_id, reason=LEASE_EXPIRED)
    assert await h.store.instance(instance_id) is None


async def test_deregister_is_idempotent(h: Harness) -> None:
    instance_id = (await h.catalog.register(_spec())).instance.instance_id
    assert await h.catalog.deregister(instance_id) == 2
    assert await h.catalog.deregister(instance_id) == 2
    assert len(h.published) == 2


async def test_expire_leases_removes_only_expired_instances(h: Harness) -> None:
    old = (await h.catalog.register(_spec())).instance.instance_id
    h.clock.now += 3
    young = (await h.catalog.register(_spec())).instance.instance_id
    h.clock.now += 2.5  # old is 5.5 s past its lease start, young 2.5 s
    assert await h.catalog.expire_leases() == [old]
    assert [i.instance_id for i in (await h.catalog.list_instances()).instances] == [young]
    assert h.published[-1] == Removed(revision=3, instance_id=old, reason=LEASE_EXPIRED)
    assert await h.catalog.expire_leases() == []


async def test_seconds_until_next_expiry(h: Harness) -> None:
    assert await h.catalog.seconds_until_next_expiry() is None
    await h.catalog.register(_spec())
    h.clock.now += 1
    assert await h.catalog.seconds_until_next_expiry() == pytest.approx(TTL_S - 1)
    h.clock.now += 10
    assert await h.catalog.seconds_until_next_expiry() == 0.0


async def test_extend_all_leases_gives_a_full_ttl_from_now(h: Harness) -> None:
    instance_id = (await h.catalog.register(_spec())).instance.instance_id
    h.clock.now += 100  # the registry was down for a while
    assert await h.catalog.extend_all_leases() == 1
    assert await h.catalog.expire_leases() == []
    stored = await h.store.instance(instance_id)
    assert stored is not None and stored.lease_expires_at == h.clock.now + TTL_S


async def test_list_filters_by_agent_and_capability(h: Harness) -> None:
    await h.catalog.register(_spec("billing", capabilities=("billing.refund", "billing.quote")))
    await h.catalog.register(_spec("search", capabilities=("search.web",)))
    await h.catalog.register(_spec("quotes", capabilities=("billing.quote",)))

    async def agents(**filters: str) -> list[str]:
        return sorted(i.agent for i in (await h.catalog.list_instances(**filters)).instances)

    assert await agents() == ["billing", "quotes", "search"]
    assert await agents(agent="search") == ["search"]
    assert await agents(capability="billing.quote") == ["billing", "quotes"]
    assert await agents(agent="billing", capability="search.web") == []
    assert (await h.catalog.list_instances()).revision == 3
    with pytest.raises(InvalidInput, match="^agent must be 1-63 characters"):
        await h.catalog.list_instances(agent="Bad Name")
    with pytest.raises(InvalidInput, match="^capability must be 1-128 characters"):
        await h.catalog.list_instances(capability="Bad Name")


async def test_snapshot_and_events_after_agree(h: Harness) -> None:
    a = (await h.catalog.register(_spec())).instance.instance_id
    b = (await h.catalog.register(_spec("search"))).instance.instance_id
    await h.catalog.deregister(a)
    snapshot = await h.catalog.snapshot()
    assert snapshot.revision == 3
    assert [i.instance_id for i in snapshot.instances] == [b]
    missed = await h.catalog.events_after(1)
    assert missed is not None
    assert [type(e) for e in missed] == [Upserted, Removed]
    assert await h.catalog.events_after(4) is None


async def test_with_a_caller_an_agent_touches_only_its_own_instances(h: Harness) -> None:
    billing = (await h.catalog.register(_spec(), _caller("billing", svid_expires_at=5.0))).instance
    assert billing.spiffe_id == agent_id("mesh.test", "billing") and billing.svid_expires_at == 5.0
    search = _caller("search")
    with pytest.raises(PermissionDenied, match="'billing'"):
        await h.catalog.register(_spec(), search)  # registering as another agent
    with pytest.raises(PermissionDenied, match=f"replace instance {billing.instance_id}"):
        await h.catalog.register(_spec("search", instance_id=billing.instance_id, capabilities=()), search)
    with pytest.raises(PermissionDenied):
        await h.catalog.renew(billing.instance_id, search)
    with pytest.raises(PermissionDenied):
        await h.catalog.deregister(billing.instance_id, search)
    assert len(h.published) == 1 and await h.catalog.instance(billing.instance_id) == billing


async def test_who_enrolled_an_instance_is_its_certificates_never_the_sidecars(h: Harness) -> None:
    sent = catalog_pb2.Instance(agent="billing", version="1.0.0", peer_address="127.0.0.1:7411")
    sent.enrolment.how, sent.enrolment.principal = "join_token", "operator:sha256:forged"
    assert spec_from_proto(sent).enrolment == NOT_RECORDED  # what the sidecar sends is not read at all
    by_token = Enrolment(how=JOIN_TOKEN, principal="operator:sha256:0123456789abcdef", token_id="jt-1")
    caller = replace(_caller("billing"), enrolment=by_token)
    forged = replace(_spec(), enrolment=Enrolment(how=JOIN_TOKEN, principal="operator:sha256:forged"))
    registered = (await h.catalog.register(forged, caller)).instance
    assert registered.enrolment == by_token
    stored = await h.catalog.instance(registered.instance_id)
    assert stored is not None and stored.enrolment == by_token


async def test_a_change_is_published_even_when_its_caller_is_cancelled(tmp_path: Path) -> None:
    stores = await open_sqlite(tmp_path / "cancel", event_log_retention=10)
    writing, published = asyncio.Event(), list[CatalogEvent]()

    class SignallingStore:  # the real store, telling the test when a write has begun
        def __getattr__(self, name: str) -> object:
            return getattr(stores.catalog, name)

        async def add_all(self, instances: Sequence[Instance]) -> list[Upserted | None]:
            writing.set()
            return await stores.catalog.add_all(instances)

    catalog = Catalog(SignallingStore(), stores.leases, FakeClock(), lease_ttl_s=TTL_S, publish=published.append)  # type: ignore[arg-type]
    try:
        task = asyncio.create_task(catalog.register(_spec()))
        await asyncio.wait_for(writing.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(500):  # the shielded write still commits, then publishes
            if published:
                break
            await asyncio.sleep(0.01)
        assert [e.revision for e in published] == [1] and await stores.catalog.revision() == 1
    finally:
        await stores.close()
