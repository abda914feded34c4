"""The mesh keeps working when parts of it fail: the registry, an agent, a whole instance."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import meshwarden
from meshwarden import errors
from meshwarden.identity.credentials import channel_credentials, expect_peer
from meshwarden.identity.svid import svid_from_pem
from meshwarden.supervise import Child
from meshwarden.v1 import sidecar_pb2, sidecar_pb2_grpc
from tests.integration.load import SteadyLoad
from tests.integration.mesh import LocalMesh
from tests.integration.test_calls import routable

pytestmark = pytest.mark.integration


async def test_registry_killed_under_load_routing_continues_and_resyncs(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk")
    await mesh.pair("early")
    registry = mesh.registry
    assert registry is not None
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo")
        # Calls keep flowing, from three callers at once, through the crash, the outage and the restart.
        async with SteadyLoad(client, "echo", {"n": 7}, invoke_options={"version": "^1"}) as load:
            await load.wait_for(10)
            await registry.kill()  # a crash, not a clean stop
            await load.wait_for(30)  # the last known catalog keeps routing
            await mesh.restart_registry()
            # a newcomer registered after the outage reaches the old sidecar via the watch stream
            late_side = await mesh.sidecar("late")
            await mesh.agent(late_side, "3.0.0")
            result = await routable(client, "echo", version="^3")
            assert result.agent == "late"
            await load.wait_for(10)
        # and the instance from before the outage is still there: it kept its lease
        assert (await client.invoke("echo", {}, version="^1", timeout=5)).agent == "early"
    assert load.failures == []
    assert len(load.results) >= 50 and all(r.value["echo"] == {"n": 7} for r in load.results)


async def test_a_crashed_instance_leaves_routing_within_three_heartbeats(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk")
    side, agent = await mesh.pair("fragile")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo")
        await agent.kill()
        await side.kill()
        killed_at = time.monotonic()
        while True:
            try:
                await client.invoke("echo", {}, timeout=2)
            except errors.NoHealthyInstance as err:
                assert "left the catalog" in err.message
                break
            except errors.Unreachable:
                pass  # PeerUnavailable until the lease expires: the caller still has it
            assert time.monotonic() - killed_at < 10, "the dead instance was never removed"
            await asyncio.sleep(0.05)
    # heartbeat 0.5 s: the lease is 1.25 s; removal plus the watch push must land within 3 intervals
    assert time.monotonic() - killed_at < 3 * mesh.heartbeat_interval_s + 0.5


async def test_agent_down_behind_a_live_sidecar_is_unavailable_and_names_it(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk")
    _, agent = await mesh.pair("sleepy")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo")
        await agent.kill()
        with pytest.raises(errors.PeerUnavailable) as info:
            await client.invoke("echo", {}, timeout=5)
    assert "sleepy" in info.value.message and "callback endpoint" in info.value.message


def peer_channel(mesh: LocalMesh, side: Child, as_agent: str = "observed") -> grpc.aio.Channel:
    """An mTLS channel to `side`'s peer port, presenting the SVID of the sidecar of `as_agent`."""
    identity = next(mesh.workdir.glob(f"sidecars/{as_agent}-*/identity"))
    svid = svid_from_pem(
        (identity / "svid.pem").read_bytes(),
        (identity / "svid.key").read_bytes(),
        (identity / "trust-bundle.pem").read_bytes(),
    )
    return grpc.aio.secure_channel(
        side.addresses["peer"],
        channel_credentials(svid, svid.trust_bundle_pem),
        options=expect_peer(side.addresses["spiffe_id"]),
    )


@pytest.mark.parametrize("which", ["listen", "peer", "agent"])
async def test_every_grpc_server_serves_health_and_reflection(mesh: LocalMesh, which: str) -> None:
    side, agent = await mesh.pair("observed")
    address = agent.addresses["listen"] if which == "agent" else side.addresses[which]
    expected = {"listen": "meshwarden.v1.Sidecar", "peer": "meshwarden.v1.Peer", "agent": "meshwarden.v1.Agent"}[which]
    channel = peer_channel(mesh, side) if which == "peer" else grpc.aio.insecure_channel(address)
    async with channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=expected), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name async for r in stream for s in r.list_services_response.service}
    assert {expected, "grpc.health.v1.Health"} <= names


async def test_sidecar_deregisters_and_exits_zero_on_sigterm(mesh: LocalMesh) -> None:
    side, agent = await mesh.pair("tidy")
    await agent.stop()
    assert await side.stop() == 0
    assert await mesh.list_instances(agent="tidy") == []  # gone at once, not after the lease


async def test_breaker_opens_on_a_failing_instance_and_routing_moves_to_the_healthy_one(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk", "--breaker-failures", "2", "--breaker-reset-s", "60")
    healthy, _ = await mesh.pair("twin")
    failing, failing_agent = await mesh.pair("twin")
    ids = {healthy.addresses["instance_id"], failing.addresses["instance_id"]}
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        seen: set[str] = set()
        for _ in range(200):  # both instances in the caller's catalog
            seen.add((await routable(client, "echo")).instance_id)
            if seen == ids:
                break
        assert seen == ids
        await failing_agent.kill()  # its sidecar stays up and answers UNAVAILABLE
        outcomes: list[str] = []
        for n in range(60):
            try:  # no idempotency key: no retries, so the breaker alone is seen
                result = await client.invoke("echo", {"n": n}, timeout=5, idempotent=False)
                outcomes.append(result.instance_id)
            except errors.PeerUnavailable as err:
                assert "callback endpoint" in err.message
                outcomes.append("failed")
    assert outcomes.count("failed") == 2  # --breaker-failures, then never again
    last_failure = max(i for i, o in enumerate(outcomes) if o == "failed")
    assert set(outcomes[last_failure + 1 :]) == {healthy.addresses["instance_id"]}
    assert len(outcomes) - last_failure > 30
    assert f"circuit opened for instance {failing.addresses['instance_id']}" in caller.stderr_text()
    async with grpc.aio.insecure_channel(caller.addresses["listen"]) as channel:
        listed = await sidecar_pb2_grpc.SidecarStub(channel).ListCapabilities(
            sidecar_pb2.ListCapabilitiesRequest(), timeout=5
        )
    assert dict(listed.breaker_states) == {
        failing.addresses["instance_id"]: "open",
        healthy.addresses["instance_id"]: "closed",
    }
    # With idempotency keys (the SDK's default) the same outage is invisible to the agent:
    # the breaker keeps the dead instance out, and a retry would cover any slip.
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        for n in range(20):
            assert (await client.invoke("echo", {"n": n}, timeout=5)).instance_id == healthy.addresses["instance_id"]
