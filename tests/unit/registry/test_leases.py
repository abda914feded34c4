"""registry.leases: the reaper loop and the grace given to persisted leases at start."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from meshwarden.registry import leases
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.model import Capability, CatalogEvent, InstanceSpec, Removed
from meshwarden.registry.store import Store

TTL_S = 5.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now


def _spec() -> InstanceSpec:
    return InstanceSpec(
        agent="billing",
        version="1.0.0",
        peer_address="127.0.0.1:7411",
        capabilities=(Capability(name="billing.refund", schema_hash="sha256:" + "0" * 64),),
    )


async def _wait_for(condition: object, timeout_s: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_reaper_removes_expired_leases_as_lease_expired(tmp_path: Path) -> None:
    clock, published = FakeClock(), list[CatalogEvent]()
    store = Store.open(tmp_path, event_log_retention=100)
    catalog = Catalog(store, clock, lease_ttl_s=TTL_S, publish=published.append)
    older = catalog.register(_spec()).instance.instance_id  # lease until t0 + 5
    clock.now += 4
    younger = catalog.register(_spec()).instance.instance_id  # lease until t0 + 9
    clock.now += 1.1  # t0 + 5.1: only the older lease has expired
    reaper = asyncio.create_task(leases.reap_expired_leases(catalog, heartbeat_interval_s=0.02))
    try:
        await _wait_for(lambda: len(published) == 3)
        assert published[2] == Removed(revision=3, instance_id=older, reason="lease_expired")
        assert [i.instance_id for i in catalog.list_instances().instances] == [younger]
    finally:
        reaper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reaper
        store.close()


async def test_reaper_survives_a_failing_pass(tmp_path: Path) -> None:
    clock = FakeClock()
    store = Store.open(tmp_path, event_log_retention=100)
    catalog = Catalog(store, clock, lease_ttl_s=TTL_S, publish=lambda event: None)
    calls: list[int] = []
    real_expire = catalog.expire_leases

    def flaky() -> list[str]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk hiccup")
        return real_expire()

    catalog.expire_leases = flaky  # type: ignore[method-assign]
    reaper = asyncio.create_task(leases.reap_expired_leases(catalog, heartbeat_interval_s=0.02))
    try:
        await _wait_for(lambda: len(calls) >= 3)
        assert not reaper.done()
    finally:
        reaper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reaper
        store.close()


def test_forgive_downtime_extends_every_persisted_lease(tmp_path: Path) -> None:
    clock = FakeClock()
    store = Store.open(tmp_path, event_log_retention=100)
    Catalog(store, clock, lease_ttl_s=TTL_S, publish=lambda event: None).register(_spec())
    store.close()

    clock.now += 3600  # the registry was down for an hour
    store = Store.open(tmp_path, event_log_retention=100)
    catalog = Catalog(store, clock, lease_ttl_s=TTL_S, publish=lambda event: None)
    try:
        leases.forgive_downtime(catalog)
        assert catalog.expire_leases() == []
        assert catalog.seconds_until_next_expiry() == TTL_S
        clock.now += TTL_S
        assert len(catalog.expire_leases()) == 1  # not renewed within a TTL: gone after all
    finally:
        store.close()
