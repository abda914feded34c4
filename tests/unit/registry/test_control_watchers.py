"""registry.control_acks with replicas: each replica publishes the sidecars watching it to the
shared store, so "enforced by N/N" counts every replica's sidecars, whichever was asked."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from meshwarden.registry.control_acks import REPLICA_TTL_S, Acknowledgements
from meshwarden.registry.store import Stores
from tests.unit.sidecar.fakes import FakeClock

A, B, C = (f"spiffe://mesh.test/agent/{n}" for n in ("a", "b", "c"))


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    async def poll() -> None:
        while not await check():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), 10)


async def test_every_replica_counts_the_sidecars_watching_every_replica(stores: Stores) -> None:
    shared = stores.control_watchers
    if shared is None:
        pytest.skip("one registry process (SQLite): every sidecar watches it, nothing to share")
    clock = FakeClock()
    first, second = Acknowledgements(clock, shared), Acknowledgements(clock, shared)
    sharing = [asyncio.create_task(first.share_forever()), asyncio.create_task(second.share_forever())]
    try:
        first.watching("a-1", A)
        second.watching("b-1", B)

        async def published(count: int) -> bool:
            return len(await shared.live(clock.wall() - REPLICA_TTL_S)) == count

        await _until(lambda: published(2))
        nobody = await first.wait_for(5, clock.monotonic(), 0)
        assert (nobody.enforced, nobody.expected, nobody.not_acknowledged) == (0, 2, ("a-1", "b-1"))

        first.acknowledge("a-1", 5, A)
        second.acknowledge("b-1", 5, B)  # reached the other replica: the first counts it all the same
        both = await asyncio.wait_for(first.wait_for(5, clock.monotonic(), 30), 10)
        assert (both.enforced, both.expected, both.not_acknowledged) == (2, 2, ())

        # The first replica dies (it stops publishing): its sidecars no longer count.
        sharing[0].cancel()
        clock.now += REPLICA_TTL_S + 1
        second.watching("c-1", C)
        await _until(lambda: published(2))
        alone = await second.wait_for(6, clock.monotonic(), 0)
        assert (alone.expected, alone.not_acknowledged) == (2, ("b-1", "c-1"))
    finally:
        for task in sharing:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
