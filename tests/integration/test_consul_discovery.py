"""Real sidecars and agents discovering each other through Consul's HTTP API, as documented
(tests/integration/consul_fake.py cites the pages): registration, TTL renewals, blocking
queries and their index rules, a crashed instance leaving routing, a Consul outage, and
deregistration on a clean stop. The registry still carries bundles and the operator view."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

import meshwarden
from meshwarden.sidecar.discovery.consul_service import MESH_TAG, decode_capabilities, schema_key
from meshwarden.supervise import Child
from meshwarden.v1 import sidecar_pb2, sidecar_pb2_grpc
from tests.integration.consul_fake import FakeConsul, parse_duration
from tests.integration.mesh import LocalMesh
from tests.integration.test_calls import routable

pytestmark = pytest.mark.integration

TOKEN = "b1gs3cr3t-consul-acl-token"
TTL_S = 1.0
WAIT_S = 2.0


@pytest.fixture
async def consul() -> AsyncIterator[FakeConsul]:
    fake = FakeConsul(token=TOKEN)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


async def consul_sidecar(mesh: LocalMesh, consul: FakeConsul, agent: str) -> Child:
    return await mesh.sidecar(
        agent,
        "--discovery",
        "consul",
        "--consul-check-ttl-s",
        str(TTL_S),
        "--consul-wait-s",
        str(WAIT_S),
        env=consul.env(),
    )


async def routing_view(sidecar: Child) -> set[str]:
    """The instances the sidecar's routing catalog holds (ListCapabilities reads exactly that)."""
    async with grpc.aio.insecure_channel(sidecar.addresses["listen"]) as channel:
        reply = await sidecar_pb2_grpc.SidecarStub(channel).ListCapabilities(
            sidecar_pb2.ListCapabilitiesRequest(), timeout=5
        )
    return {i.instance_id for i in reply.instances}


async def eventually(condition: Callable[[], object], what: str, attempts: int = 300) -> None:
    for _ in range(attempts):
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def test_registration_renewals_and_blocking_queries_follow_the_api(mesh: LocalMesh, consul: FakeConsul) -> None:
    caller = await consul_sidecar(mesh, consul, "frontdesk")
    billing = await consul_sidecar(mesh, consul, "billing")
    await mesh.agent(billing, "2.4.0")
    instance_id = billing.addresses["instance_id"]
    assert billing.addresses["discovery"] == "consul"

    async with meshwarden.Client(caller.addresses["listen"]) as client:
        result = await routable(client, "echo", {"n": 1})
    assert (result.agent, result.version, result.instance_id) == ("billing", "2.4.0", instance_id)

    # Registration: service name = agent name, ID = instance id, peer address as Address/Port
    # and in Meta, the mesh tag, and a TTL check with DeregisterCriticalServiceAfter.
    service = consul.services[instance_id]
    peer_host, _, peer_port = billing.addresses["peer"].rpartition(":")
    assert (service.name, service.address, service.port) == ("billing", peer_host, int(peer_port))
    assert MESH_TAG in service.tags
    assert service.meta["meshwarden-version"] == "2.4.0"
    assert service.meta["meshwarden-spiffe-id"] == billing.addresses["spiffe_id"]
    assert service.meta["meshwarden-peer-address"] == billing.addresses["peer"]
    assert len(service.meta) <= 64 and all(len(v) <= 512 for v in service.meta.values())
    check = consul.checks[f"meshwarden:{instance_id}"]
    assert (check.service_id, check.ttl_s, check.deregister_after_s) == (instance_id, TTL_S, 60.0)
    register = consul.requests_to("PUT", "/v1/agent/service/register")[-1]
    assert register.query.get("replace-existing-checks") == "true"

    # Capabilities with schema hashes: the same as the registry's catalog (agents list), and
    # each schema stored in KV under its hash before the service was registered.
    listed = {i.instance_id: i for i in await mesh.list_instances()}
    assert set(listed) == consul.passing_ids("billing") | consul.passing_ids("frontdesk")
    expected = sorted((c.name, c.schema_hash) for c in listed[instance_id].capabilities)
    assert sorted(decode_capabilities(service.meta)) == expected
    kv_writes = [r.path for r in consul.requests_to("PUT", "/v1/kv/")]
    assert {f"/v1/kv/{schema_key(h)}" for _, h in expected} <= set(kv_writes)
    first_register = consul.requests.index(next(r for r in consul.requests if r.path == register.path))
    first_kv = consul.requests.index(next(r for r in consul.requests if r.path.startswith("/v1/kv/")))
    assert first_kv < first_register

    # TTL renewals keep arriving, with a note people can read.
    await eventually(
        lambda: len(consul.requests_to("PUT", f"/v1/agent/check/pass/meshwarden:{instance_id}")) >= 3, "3 renewals"
    )
    renewal = consul.requests_to("PUT", f"/v1/agent/check/pass/meshwarden:{instance_id}")[-1]
    assert "policy bundle revision 1 active" in renewal.query["note"]

    # Blocking queries: the first read without an index, then index + wait, passing only.
    health = consul.requests_to("GET", "/v1/health/service/billing")
    assert "index" not in health[0].query
    await eventually(
        lambda: any("index" in r.query for r in consul.requests_to("GET", "/v1/health/service/billing")),
        "a blocking query",
    )
    blocking = [r for r in consul.requests_to("GET", "/v1/health/service/billing") if "index" in r.query]
    assert all(int(r.query["index"]) >= 1 and parse_duration(r.query["wait"]) == WAIT_S for r in blocking)
    assert all("passing" in r.query for r in health)
    assert any("index" in r.query for r in consul.requests_to("GET", "/v1/catalog/services"))

    # Every request carried the ACL token, in the header Consul reads.
    assert all(r.headers.get("X-Consul-Token") == TOKEN for r in consul.requests)


async def test_a_crashed_sidecar_goes_critical_and_leaves_routing(mesh: LocalMesh, consul: FakeConsul) -> None:
    caller = await consul_sidecar(mesh, consul, "frontdesk")
    doomed = await consul_sidecar(mesh, consul, "billing")
    await mesh.agent(doomed, "1.0.0")
    survivor = await consul_sidecar(mesh, consul, "billing")
    await mesh.agent(survivor, "1.0.0")
    both = {doomed.addresses["instance_id"], survivor.addresses["instance_id"]}
    await eventually(lambda: _contains(caller, both), "both instances routable")

    await doomed.kill()  # SIGKILL: no deregistration, the TTL check simply stops being renewed
    await eventually(
        lambda: consul.checks[f"meshwarden:{doomed.addresses['instance_id']}"].status == "critical", "TTL expiry"
    )
    await eventually(lambda: _equals(caller, {survivor.addresses["instance_id"]}), "critical left routing")
    # Consul still lists the instance (it is reaped only after DeregisterCriticalServiceAfter):
    # it is the `passing` filter that took it out of routing.
    assert doomed.addresses["instance_id"] in consul.services
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        for n in range(10):
            result = await client.invoke("echo", {"n": n}, timeout=5)
            assert result.instance_id == survivor.addresses["instance_id"]


async def test_routing_goes_on_from_the_last_view_while_consul_is_unreachable(
    mesh: LocalMesh, consul: FakeConsul
) -> None:
    caller = await consul_sidecar(mesh, consul, "frontdesk")
    billing = await consul_sidecar(mesh, consul, "billing")
    await mesh.agent(billing, "1.0.0")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo")
        await consul.stop_listening()
        await eventually(lambda: "Consul unreachable" in caller.stderr_text(), "the caller noticing", attempts=600)
        for n in range(10):
            assert (await client.invoke("echo", {"n": n}, timeout=5)).instance_id == billing.addresses["instance_id"]
        assert billing.addresses["instance_id"] in await routing_view(caller)

        await consul.start()  # same port, same state: the checks went critical meanwhile
        await eventually(
            lambda: "Consul reachable again" in caller.stderr_text(), "the caller reconnecting", attempts=600
        )
        await eventually(lambda: billing.addresses["instance_id"] in consul.passing_ids("billing"), "renewed again")
        assert (await client.invoke("echo", {}, timeout=5)).instance_id == billing.addresses["instance_id"]


async def test_clean_shutdown_deregisters_from_consul_and_the_registry(mesh: LocalMesh, consul: FakeConsul) -> None:
    billing = await consul_sidecar(mesh, consul, "billing")
    await mesh.agent(billing, "1.0.0")
    instance_id = billing.addresses["instance_id"]
    await eventually(lambda: instance_id in consul.passing_ids("billing"), "registered")
    assert await billing.stop() == 0
    assert consul.requests_to("PUT", f"/v1/agent/service/deregister/{instance_id}")
    assert instance_id not in consul.services
    assert instance_id not in {i.instance_id for i in await mesh.list_instances()}


async def test_an_index_going_backwards_or_to_zero_restarts_the_blocking_loop(
    mesh: LocalMesh, consul: FakeConsul
) -> None:
    caller = await consul_sidecar(mesh, consul, "frontdesk")
    billing = await consul_sidecar(mesh, consul, "billing")
    await mesh.agent(billing, "1.0.0")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        await routable(client, "echo")
    path = "/v1/catalog/services"

    seen = len(consul.requests)
    consul.answer_index_zero_once()  # and the fresh read after the reset will be answered with index 0
    await consul.restore_older_snapshot(3)  # lower than any index the sidecars hold
    reads = lambda: [r for r in consul.requests[seen:] if r.path == path]  # noqa: E731
    # The blocked queries return at once with index 3; each loop then reads afresh (no index)...
    await eventually(lambda: any("index" not in r.query for r in reads()), "a reset to 0")
    # ...is told 0 by that read, and blocks with index 1, never 0 (which would not block).
    await eventually(lambda: any(r.query.get("index") == "1" for r in consul.requests[seen:]), "index 1 after 0")
    assert not any(r.query.get("index") == "0" for r in consul.requests)
    told_zero = next(r.path for r in consul.requests[seen:] if r.query.get("index") == "1")
    order = [r.query.get("index", "none") for r in consul.requests[seen:] if r.path == told_zero]
    assert order.index("none") < order.index("1")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        assert (await client.invoke("echo", {}, timeout=5)).instance_id == billing.addresses["instance_id"]


async def test_a_wrong_token_is_refused_and_said_so(mesh: LocalMesh, consul: FakeConsul) -> None:
    side = await mesh.sidecar(
        "billing", "--discovery", "consul", env={**consul.env(), "CONSUL_HTTP_TOKEN": "not-the-token"}
    )
    await mesh.agent(side, "1.0.0")
    await eventually(lambda: "Permission denied" in side.stderr_text(), "the refusal in the log")
    assert "not-the-token" not in side.stderr_text() and TOKEN not in side.stderr_text()
    assert not consul.services


async def _contains(side: Child, ids: set[str]) -> bool:
    return ids <= await routing_view(side)


async def _equals(side: Child, ids: set[str]) -> bool:
    return ids == await routing_view(side)
