"""The registry as a real process (`meshwarden registry serve`), checked over real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from meshwarden.cli import exit_codes
from meshwarden.registry_client import registry_channel, registry_stub
from meshwarden.supervise import meshwarden_argv
from meshwarden.v1 import catalog_pb2, registry_pb2, registry_pb2_grpc
from tests.integration.mesh import LocalMesh

pytestmark = pytest.mark.integration

HEARTBEAT_S = 0.3  # lease 0.75 s
HASH = "sha256:" + "f" * 64


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalMesh]:
    mesh = LocalMesh(tmp_path, heartbeat_interval_s=HEARTBEAT_S)
    await mesh.start_registry()
    try:
        yield mesh
    finally:
        await mesh.close()
        print(mesh.logs())  # pytest shows it only when the test failed


@pytest.fixture
async def stub(local: LocalMesh) -> AsyncIterator[registry_pb2_grpc.RegistryStub]:
    async with registry_channel(local.registry_address) as channel:
        yield registry_stub(channel)


def _instance(agent: str, *capabilities: str, version: str = "1.0.0") -> catalog_pb2.Instance:
    return catalog_pb2.Instance(
        agent=agent,
        version=version,
        peer_address="127.0.0.1:7411",
        spiffe_id=f"spiffe://mesh.test/agent/{agent}",
        capabilities=[
            catalog_pb2.Capability(name=name, input_schema_json='{"type":"object"}', schema_hash=HASH)
            for name in capabilities
        ],
    )


async def _register(stub: registry_pb2_grpc.RegistryStub, instance: catalog_pb2.Instance) -> registry_pb2.RegisterResponse:
    reply: registry_pb2.RegisterResponse = await stub.Register(registry_pb2.RegisterRequest(instance=instance), timeout=5)
    return reply


async def _listed(stub: registry_pb2_grpc.RegistryStub, **filters: str) -> registry_pb2.ListInstancesResponse:
    reply: registry_pb2.ListInstancesResponse = await stub.ListInstances(
        registry_pb2.ListInstancesRequest(**filters), timeout=5
    )
    return reply


@contextlib.asynccontextmanager
async def _kept_alive(stub: registry_pb2_grpc.RegistryStub, *instance_ids: str) -> AsyncIterator[None]:
    """Renews the leases every heartbeat, as sidecars do, while a slow step (a CLI run) happens."""

    async def renew_forever() -> None:
        while True:
            for instance_id in instance_ids:
                await stub.Renew(registry_pb2.RenewRequest(instance_id=instance_id), timeout=5)
            await asyncio.sleep(HEARTBEAT_S)

    renewer = asyncio.create_task(renew_forever())
    try:
        yield
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer


async def _read(
    call: grpc.aio.UnaryStreamCall[registry_pb2.WatchRequest, registry_pb2.WatchEvent], timeout_s: float = 5.0
) -> registry_pb2.WatchEvent:
    event = await asyncio.wait_for(call.read(), timeout_s)
    if not isinstance(event, registry_pb2.WatchEvent):
        pytest.fail("the watch stream ended")
    return event


async def test_health_is_serving_and_reflection_lists_the_registry(local: LocalMesh) -> None:
    async with registry_channel(local.registry_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "meshwarden.v1.Registry"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = [s.name async for r in responses for s in r.list_services_response.service]
    assert "meshwarden.v1.Registry" in names
    assert "grpc.health.v1.Health" in names


async def test_register_then_list_with_filters(stub: registry_pb2_grpc.RegistryStub) -> None:
    billing = await _register(stub, _instance("billing", "billing.refund", "billing.quote", version="2.3.1"))
    search = await _register(stub, _instance("search", "search.web"))
    assert billing.revision < search.revision
    assert billing.lease_ttl.ToTimedelta().total_seconds() == pytest.approx(2.5 * HEARTBEAT_S)
    assert billing.heartbeat_interval.ToTimedelta().total_seconds() == pytest.approx(HEARTBEAT_S)

    everything = await _listed(stub)
    assert sorted(i.agent for i in everything.instances) == ["billing", "search"]
    assert everything.revision == search.revision
    (only,) = (await _listed(stub, capability="billing.quote")).instances
    assert only.instance_id == billing.instance_id and only.version == "2.3.1"
    assert [c.name for c in only.capabilities] == ["billing.refund", "billing.quote"]
    assert only.lease_expires_at.ToNanoseconds() > only.registered_at.ToNanoseconds()
    assert [i.agent for i in (await _listed(stub, agent="search")).instances] == ["search"]


async def test_renewed_leases_stay_and_unrenewed_ones_expire_within_three_heartbeats(
    stub: registry_pb2_grpc.RegistryStub,
) -> None:
    kept = await _register(stub, _instance("kept", "kept.run"))
    async with _kept_alive(stub, kept.instance_id):
        watch = stub.Watch(registry_pb2.WatchRequest(since_revision=kept.revision))
        await asyncio.wait_for(watch.initial_metadata(), 5)
        dropped = await _register(stub, _instance("dropped", "dropped.run"))
        registered_at = time.monotonic()
        try:
            assert (await _read(watch)).upserted.instance_id == dropped.instance_id
            removal = await _read(watch, timeout_s=10 * HEARTBEAT_S)
            removed_after_s = time.monotonic() - registered_at
            remaining = await _listed(stub)
        finally:
            watch.cancel()
    assert removal.removed.instance_id == dropped.instance_id
    assert removal.removed.reason == "lease_expired"
    assert removal.revision == dropped.revision + 1
    # Never before the lease ran out; within three heartbeat intervals of the registration.
    assert 2.5 * HEARTBEAT_S - 0.05 <= removed_after_s < 3 * HEARTBEAT_S
    assert [i.instance_id for i in remaining.instances] == [kept.instance_id]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Renew(registry_pb2.RenewRequest(instance_id=dropped.instance_id), timeout=5)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_watch_gives_a_snapshot_then_resumes_with_exactly_the_missed_events(
    stub: registry_pb2_grpc.RegistryStub,
) -> None:
    first = await _register(stub, _instance("alpha", "alpha.run"))
    second = await _register(stub, _instance("beta", "beta.run"))

    watch = stub.Watch(registry_pb2.WatchRequest(since_revision=0))
    snapshot = await _read(watch)
    watch.cancel()
    assert snapshot.WhichOneof("change") == "snapshot"
    assert snapshot.revision == second.revision
    assert sorted(i.instance_id for i in snapshot.snapshot.instances) == sorted(
        [first.instance_id, second.instance_id]
    )

    # While nobody watches: one removal, one addition.
    await stub.Deregister(registry_pb2.DeregisterRequest(instance_id=first.instance_id), timeout=5)
    third = await _register(stub, _instance("gamma", "gamma.run"))

    resumed = stub.Watch(registry_pb2.WatchRequest(since_revision=snapshot.revision))
    missed = [await _read(resumed), await _read(resumed)]
    assert [e.revision for e in missed] == [snapshot.revision + 1, snapshot.revision + 2]
    assert missed[0].WhichOneof("change") == "removed"
    assert (missed[0].removed.instance_id, missed[0].removed.reason) == (first.instance_id, "deregistered")
    assert missed[1].WhichOneof("change") == "upserted" and missed[1].upserted.instance_id == third.instance_id

    # Then live changes, nothing replayed twice.
    fourth = await _register(stub, _instance("delta", "delta.run"))
    live = await _read(resumed)
    assert live.revision == fourth.revision == missed[1].revision + 1
    assert live.upserted.agent == "delta"
    resumed.cancel()


async def test_state_and_revision_survive_a_restart(local: LocalMesh) -> None:
    async with registry_channel(local.registry_address) as channel:
        stub = registry_stub(channel)
        await _register(stub, _instance("billing", "billing.refund"))
        last = await _register(stub, _instance("search", "search.web"))
        before = await _listed(stub)
        watcher = stub.Watch(registry_pb2.WatchRequest(since_revision=last.revision))
        await asyncio.wait_for(watcher.initial_metadata(), 5)
        assert local.registry is not None
        assert await local.registry.stop() == 0  # SIGTERM: a clean exit
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _read(watcher)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE  # told to reconnect

    # Stay down until every stored lease has run out: only the restart's grace keeps them.
    latest_expiry_s = max(i.lease_expires_at.ToNanoseconds() for i in before.instances) / 1e9
    await asyncio.sleep(max(0.0, latest_expiry_s - time.time()) + 0.05)

    await local.start_registry()
    async with registry_channel(local.registry_address) as channel:
        stub = registry_stub(channel)
        for instance in before.instances:  # still there, and renewable
            await stub.Renew(registry_pb2.RenewRequest(instance_id=instance.instance_id), timeout=5)
        after = await _listed(stub)
        assert after.revision == before.revision
        assert sorted(i.instance_id for i in after.instances) == sorted(i.instance_id for i in before.instances)
        newcomer = await _register(stub, _instance("late", "late.run"))
        assert newcomer.revision == before.revision + 1
        resumed = stub.Watch(registry_pb2.WatchRequest(since_revision=before.revision))
        event = await _read(resumed)
        assert (event.revision, event.upserted.instance_id) == (newcomer.revision, newcomer.instance_id)
        resumed.cancel()


async def test_invalid_input_names_the_field_and_unknown_renewals_are_not_found(
    stub: registry_pb2_grpc.RegistryStub,
) -> None:
    cases = [
        (_instance("billing", "billing.refund", version="two"), "instance.version"),
        (_instance("Billing", "billing.refund"), "instance.agent"),
        (_instance("billing", "billing.refund", "billing.refund"), "instance.capabilities[1].name"),
    ]
    broken_schema = _instance("billing", "billing.refund")
    broken_schema.capabilities[0].input_schema_json = "{"
    cases.append((broken_schema, "instance.capabilities[0].input_schema_json"))
    for instance, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _register(stub, instance)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (info.value.details() or "").startswith(field + " ")
    assert (await _listed(stub)).revision == 0  # nothing was stored

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Renew(registry_pb2.RenewRequest(instance_id="0123456789ab"), timeout=5)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    assert "register again" in (info.value.details() or "")


async def _cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *meshwarden_argv(*args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_agents_list_prints_json_and_a_table(local: LocalMesh, stub: registry_pb2_grpc.RegistryStub) -> None:
    billing = await _register(stub, _instance("billing", "billing.refund", "billing.quote", version="2.3.1"))
    search = await _register(stub, _instance("search", "search.web"))
    async with _kept_alive(stub, billing.instance_id, search.instance_id):
        code, out, err = await _cli(
            "agents", "list", "--registry", local.registry_address, "--output", "json", "--agent", "billing"
        )
        table_code, table, table_err = await _cli("agents", "list", "--registry", local.registry_address)
    assert code == exit_codes.OK, err
    (entry,) = json.loads(out)
    assert entry["agent"] == "billing" and entry["version"] == "2.3.1"
    assert entry["instance_id"] == billing.instance_id
    assert entry["peer_address"] == "127.0.0.1:7411"
    assert entry["spiffe_id"] == "spiffe://mesh.test/agent/billing"
    assert [c["name"] for c in entry["capabilities"]] == ["billing.refund", "billing.quote"]
    assert all(c["schema_hash"] == HASH for c in entry["capabilities"])
    assert entry["lease_expires_at"].endswith("Z") and "T" in entry["lease_expires_at"]

    assert table_code == exit_codes.OK, table_err
    lines = table.splitlines()
    assert lines[0].split() == ["AGENT", "VERSION", "INSTANCE", "PEER", "CAPABILITIES", "LEASE-EXPIRES-IN"]
    assert any("billing.refund,billing.quote" in line for line in lines[1:])
    assert len(lines) == 3


async def test_agents_list_exits_3_when_the_registry_is_unreachable() -> None:
    # Port 1 (tcpmux) is privileged and has nothing listening on a test machine.
    code, _out, err = await _cli("agents", "list", "--registry", "127.0.0.1:1", "--timeout", "3")
    assert code == exit_codes.UNREACHABLE
    assert "cannot reach the registry at 127.0.0.1:1" in err

