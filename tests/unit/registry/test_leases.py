"""registry.leases: the reaper loop, its supervision, and the grace given to persisted leases at start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from meshwarden.connection_liveness import MAX_RECONNECT_BACKOFF_S
from meshwarden.registry import leases
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.errors import StoreError
from meshwarden.registry.model import Capability, CatalogEvent, InstanceSpec, Removed
from meshwarden.registry.store import LeaseStore
from meshwarden.registry.store.sqlite import open_sqlite
from meshwarden.schema_hash import schema_hash

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
        capabilities=(Capability(name="billing.refund", schema_hash=schema_hash({}, {})),),
    )


async def _wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_reaper_removes_expired_leases_as_lease_expired(tmp_path: Path) -> None:
    clock, published = FakeClock(), list[CatalogEvent]()
    stores = await open_sqlite(tmp_path, event_log_retention=100)
    catalog = Catalog(stores.catalog, stores.leases, clock, lease_ttl_s=TTL_S, publish=published.append)
    older = (await catalog.register(_spec())).instance.instance_id  # lease until t0 + 5
    clock.now += 4
    younger = (await catalog.register(_spec())).instance.instance_id  # lease until t0 + 9
    clock.now += 1.1  # t0 + 5.1: only the older lease has expired
    reaper = asyncio.create_task(leases.reap_expired_leases(catalog, heartbeat_interval_s=0.02))
    try:
        await _wait_for(lambda: len(published) == 3)
        assert published[2] == Removed(revision=3, instance_id=older, reason="lease_expired")
        assert [i.instance_id for i in (await catalog.list_instances()).instances] == [younger]
    finally:
        await _stop(reaper)
        await stores.close()


class FailingLeases:
    """The real lease store, whose reads fail `failures` times first, as a locked or full
    database does (StoreError, the store's own error)."""

    def __init__(self, real: LeaseStore, failures: int) -> None:
        self._real, self.failures, self.calls = real, failures, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreError("registry.db: read failed: database is locked")

    async def earliest_expiry(self) -> float | None:
        self._maybe_fail()
        return await self._real.earliest_expiry()

    async def expired(self, now: float) -> list[str]:
        self._maybe_fail()
        return await self._real.expired(now)


async def test_reaper_survives_failing_store_reads_and_still_expires(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock, published = FakeClock(), list[CatalogEvent]()
    stores = await open_sqlite(tmp_path, event_log_retention=100)
    failing = FailingLeases(stores.leases, failures=4)  # the first passes fail where the old reaper died
    catalog = Catalog(stores.catalog, failing, clock, lease_ttl_s=TTL_S, publish=published.append)  # type: ignore[arg-type]
    instance_id = (await catalog.register(_spec())).instance.instance_id
    clock.now += TTL_S + 1
    reaper = asyncio.create_task(leases.reap_expired_leases(catalog, heartbeat_interval_s=0.2))
    try:
        with caplog.at_level(logging.ERROR, logger="meshwarden.registry.leases"):
            await _wait_for(lambda: len(published) == 2)
        assert published[1] == Removed(revision=2, instance_id=instance_id, reason="lease_expired")
        assert failing.calls > failing.failures and not reaper.done()
        failures = [r for r in caplog.records if "lease reaper pass failed" in r.getMessage()]
        assert len(failures) == failing.failures and all(r.exc_info for r in failures)
    finally:
        await _stop(reaper)
        await stores.close()


async def test_forgive_downtime_extends_every_persisted_lease(tmp_path: Path) -> None:
    clock = FakeClock()
    stores = await open_sqlite(tmp_path, event_log_retention=100)
    await Catalog(stores.catalog, stores.leases, clock, lease_ttl_s=TTL_S, publish=lambda event: None).register(_spec())
    await stores.close()

    clock.now += 3600  # the registry was down for an hour
    stores = await open_sqlite(tmp_path, event_log_retention=100)
    catalog = Catalog(stores.catalog, stores.leases, clock, lease_ttl_s=TTL_S, publish=lambda event: None)
    try:
        await leases.forgive_downtime(catalog)
        assert await catalog.expire_leases() == []
        # a TTL, and the longest a live sidecar's channel may still back off before it renews
        assert await catalog.seconds_until_next_expiry() == pytest.approx(TTL_S + leases.RECONNECT_GRACE_S)
        clock.now += TTL_S + MAX_RECONNECT_BACKOFF_S
        assert await catalog.expire_leases() == []
        clock.now += leases.RECONNECT_GRACE_S - MAX_RECONNECT_BACKOFF_S
        assert len(await catalog.expire_leases()) == 1  # not renewed within that: gone after all
    finally:
        await stores.close()
