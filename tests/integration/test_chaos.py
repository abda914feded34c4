"""Chaos on a live mesh: real processes and real TLS, with a fault proxy (fault_proxy.py)
breaking the network between them while calls flow.

Elsewhere: killing a callee under keyed load is test_retries.py; the registry killed under
load is test_mesh_resilience.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest

import meshwarden
from meshwarden import errors
from meshwarden.supervise import Child
from meshwarden.v1 import sidecar_pb2, sidecar_pb2_grpc
from tests.integration.fault_proxy import FaultProxy
from tests.integration.load import SteadyLoad
from tests.integration.mesh import LocalMesh
from tests.integration.test_calls import routable

pytestmark = pytest.mark.integration

# Fast failure detection for the tests; the defaults (10 s, 5 s) suit real networks.
QUICK_LIVENESS = ("--keepalive-s", "1", "--connect-timeout-s", "1")


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    async with FaultProxy() as p:
        yield p


async def proxied_pair(mesh: LocalMesh, agent: str, proxy: FaultProxy) -> tuple[Child, Child]:
    """A sidecar and its probe agent; other sidecars dial it through `proxy`, since the
    sidecar advertises the proxy's address as its peer address (--peer-advertise)."""
    side = await mesh.sidecar(agent, "--peer-advertise", proxy.address)
    proxy.upstream = side.addresses["peer_bound"]
    return side, await mesh.agent(side)


async def both_routable(client: meshwarden.Client, capability: str, ids: set[str]) -> None:
    seen: set[str] = set()
    deadline = time.monotonic() + 15
    while seen != ids:
        seen.add((await routable(client, capability)).instance_id)
        assert time.monotonic() < deadline, f"only {seen} of {ids} became routable"


_LEGAL = {("closed", "open"), ("open", "half-open"), ("half-open", "open"), ("half-open", "closed")}


async def test_resets_open_the_breaker_and_once_they_stop_it_half_opens_and_closes(
    mesh: LocalMesh, proxy: FaultProxy
) -> None:
    caller = await mesh.sidecar("frontdesk", "--breaker-failures", "3", "--breaker-reset-s", "1", *QUICK_LIVENESS)
    healthy, _ = await mesh.pair("twin")
    flaky, _ = await proxied_pair(mesh, "twin", proxy)
    flaky_id, healthy_id = flaky.addresses["instance_id"], healthy.addresses["instance_id"]
    states: list[str] = []  # the flaky instance's breaker, as the caller's sidecar reports it

    async def watch_states() -> None:
        async with grpc.aio.insecure_channel(caller.addresses["listen"]) as channel:
            stub = sidecar_pb2_grpc.SidecarStub(channel)
            while True:
                listed = await stub.ListCapabilities(sidecar_pb2.ListCapabilitiesRequest(), timeout=5)
                state = listed.breaker_states.get(flaky_id, "")
                if state and (not states or states[-1] != state):
                    states.append(state)
                await asyncio.sleep(0.01)

    async def load(client: meshwarden.Client, seconds: float, sleep_s: float) -> list[str]:
        """Four callers in a loop; unkeyed, so only calls that never started are retried."""
        outcomes: list[str] = []

        async def worker() -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    result = await client.invoke("probe.sleep", {"seconds": sleep_s}, timeout=5, idempotent=False)
                    outcomes.append(result.instance_id)
                except errors.MeshError as err:
                    outcomes.append(f"{type(err).__name__}: {err.message}")

        await asyncio.gather(*(worker() for _ in range(4)))
        return outcomes

    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await both_routable(client, "echo", {flaky_id, healthy_id})
        watcher = asyncio.create_task(watch_states())
        try:
            proxy.reset_all()  # every connection to the flaky instance is reset, old and new
            during = await load(client, 2.0, 0.01)
            opened = list(states)
            proxy.pass_through()
            after: list[str] = []  # calls that last, so that the trial call is seen half-open
            deadline = time.monotonic() + 20
            while not (states[-1:] == ["closed"] and flaky_id in after):
                assert time.monotonic() < deadline, f"never closed again: {states}, {after[-12:]}"
                after += await load(client, 1.0, 0.2)
        finally:
            watcher.cancel()

    assert opened[:2] == ["closed", "open"], opened
    # Resets at connect never start a call: they are retried on the healthy instance. Only the
    # calls on the flaky connections at the moment of the reset may fail (at most one per worker).
    failed = [o for o in during if o not in {flaky_id, healthy_id}]
    assert len(failed) <= 4 and all(f.startswith("PeerUnavailable") for f in failed), failed
    assert during[-10:] == [healthy_id] * 10
    assert states[:3] == ["closed", "open", "half-open"] and states[-1] == "closed", states
    assert all(step in _LEGAL for step in zip(states, states[1:], strict=False)), states
    assert set(after) == {flaky_id, healthy_id}, after  # no failures once the resets stopped
    log = caller.stderr_text()
    assert f"circuit opened for instance {flaky_id}" in log and f"circuit closed for instance {flaky_id}" in log


async def test_a_blackholed_peer_keyed_calls_fail_over_unkeyed_ones_that_started_fail_clearly(
    mesh: LocalMesh, proxy: FaultProxy
) -> None:
    caller = await mesh.sidecar("frontdesk", *QUICK_LIVENESS)
    healthy, _ = await mesh.pair("worker")
    dark, _ = await proxied_pair(mesh, "worker", proxy)
    healthy_id, dark_id = healthy.addresses["instance_id"], dark.addresses["instance_id"]

    async def outcome(call: asyncio.Future[meshwarden.Result]) -> meshwarden.Result | errors.MeshError:
        try:
            return await call
        except errors.MeshError as err:
            return err

    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await both_routable(client, "probe.runs", {healthy_id, dark_id})
        # Unkeyed calls under way on both instances when the network to one goes silent.
        started = [
            asyncio.ensure_future(client.invoke("probe.sleep", {"seconds": 1.5}, timeout=8, idempotent=False))
            for _ in range(8)
        ]
        await asyncio.sleep(0.5)
        proxy.blackhole()
        keyed = [asyncio.ensure_future(client.invoke("probe.count", {}, timeout=8)) for _ in range(20)]
        unkeyed = await asyncio.gather(*(outcome(c) for c in started))
        keyed_results = await asyncio.gather(*keyed)  # every keyed call succeeds within its deadline
        runs = (await client.invoke("probe.runs", {}, timeout=5)).value

    assert {r.instance_id for r in keyed_results} == {healthy_id}
    assert all(r.value["runs"] == 1 for r in keyed_results), "a key ran twice"
    assert all(runs["runs_by_key"][r.value["key"]] == 1 for r in keyed_results)
    lost = [o for o in unkeyed if isinstance(o, errors.MeshError)]
    served = [o for o in unkeyed if isinstance(o, meshwarden.Result)]
    assert lost and served, unkeyed  # routing spread them over both instances
    assert {r.instance_id for r in served} == {healthy_id}
    for err in lost:  # not retried: it may have run; the message says why and what to do
        assert type(err) is errors.PeerUnavailable, err
        assert dark_id in err.message and ("ping timeout" in err.message or "keepalive" in err.message), err.message
        assert "may have started" in err.message and "idempotency key" in err.message, err.message


async def test_a_sidecar_cut_off_from_the_registry_keeps_routing_and_resyncs_on_a_new_connection(
    mesh: LocalMesh, proxy: FaultProxy
) -> None:
    registry = mesh.registry
    assert registry is not None
    proxy.upstream = registry.addresses["mtls"]  # watch stream, leases and renewals
    caller = await mesh.sidecar("frontdesk", "--registry-mtls", proxy.address, *QUICK_LIVENESS)
    await mesh.pair("early")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo")
        async with SteadyLoad(client, "echo", invoke_options={"version": "^1"}) as load:
            proxy.blackhole()  # a partition: nothing passes, nothing is refused
            late_side = await mesh.sidecar("late")  # joins while the caller cannot hear of it
            await mesh.agent(late_side, "3.0.0")
            await load.wait_for(30)
            # The partition heals, but the connection it froze stays dead (a NAT that forgot it):
            # only keepalive tells the caller to open a new one and resume its watch.
            proxy.strand_open()
            deadline = time.monotonic() + 30
            while True:
                try:
                    result = await client.invoke("echo", {}, version="^3", timeout=5)
                    break
                except errors.NoHealthyInstance:
                    assert time.monotonic() < deadline, "the caller never resynced with the registry"
                    await asyncio.sleep(0.1)
            await load.wait_for(10)
    assert result.agent == "late"
    assert load.failures == [] and len(load.results) >= 40
    assert {r.agent for r in load.results} == {"early"}
    log = caller.stderr_text()
    assert "catalog watch lost" in log and "catalog watch resumed" in log
