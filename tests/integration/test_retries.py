"""Replay-safe retries on a live mesh: a keyed call fails over when an instance dies, and a
key runs once at the callee however often it is sent."""

from __future__ import annotations

import asyncio
import time

import pytest

import meshwarden
from tests.integration.mesh import LocalMesh
from tests.integration.test_calls import routable

pytestmark = pytest.mark.integration


async def test_keyed_calls_fail_over_when_an_instance_is_killed_and_no_key_runs_twice(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk")
    doomed = await mesh.pair("worker")
    await mesh.pair("worker")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        seen: set[str] = set()
        deadline = time.monotonic() + 10
        while len(seen) < 2:  # both instances are in the caller's catalog
            seen.add((await routable(client, "probe.runs")).instance_id)
            assert time.monotonic() < deadline, "the second instance never became routable"

        async def one(n: int) -> meshwarden.Result:
            return await client.invoke("probe.count", {"sleep": 0.02}, timeout=5)

        results = [await one(n) for n in range(10)]
        killer = asyncio.create_task(asyncio.sleep(0.05))
        batch = asyncio.gather(*(one(n) for n in range(40)))  # many in flight while it dies
        await killer
        await doomed[1].kill()  # kill -9: agent and sidecar, mid-call
        await doomed[0].kill()
        results += await batch
        results += [await one(n) for n in range(30)]  # the dead instance is still in the catalog for a while

    keys = [r.value["key"] for r in results]
    assert len(set(keys)) == len(keys) == 80 and all(keys), "the SDK gives each call its own key"
    assert all(r.value["runs"] == 1 for r in results), "a key ran twice on one instance"
    assert {r.instance_id for r in results[-30:]} - {doomed[1].addresses["instance_id"]}, "no failover"
    assert doomed[1].addresses["instance_id"] not in {r.instance_id for r in results[-30:]}


async def test_the_same_key_sent_twice_runs_once_and_gets_the_same_reply(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk")
    await mesh.pair("worker")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "probe.runs")
        first = await client.invoke("probe.count", {}, idempotency_key="order-42", timeout=5)
        second = await client.invoke("probe.count", {}, idempotency_key="order-42", timeout=5)
        other = await client.invoke("probe.count", {}, idempotency_key="order-43", timeout=5)
        runs = (await client.invoke("probe.runs", {}, timeout=5)).value["runs_by_key"]
    assert first.value == {"key": "order-42", "runs": 1, "instance_id": first.instance_id}
    assert (second.raw, second.instance_id, second.agent, second.version) == (
        first.raw,
        first.instance_id,
        first.agent,
        first.version,
    )
    assert other.value["runs"] == 1
    assert runs["order-42"] == 1
