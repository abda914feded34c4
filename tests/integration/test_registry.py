"""The registry as a real process (`meshwarden registry serve`), checked over real gRPC: TLS on
its listen port, mTLS with enrolled agents' SVIDs on its mTLS port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from meshwarden.cli import exit_codes
from meshwarden.registry.operators import OPERATOR_TOKEN_FILE
from meshwarden.schema_hash import schema_hash
from meshwarden.supervise import meshwarden_argv
from meshwarden.v1 import catalog_pb2, registry_pb2, registry_pb2_grpc
from tests.integration.registry_process import RegistryProcess, start_registry

pytestmark = pytest.mark.integration

HEARTBEAT_S = 0.3  # lease 0.75 s
HASH = schema_hash({"type": "object"}, {})


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[RegistryProcess]:
    running = await start_registry(tmp_path, heartbeat_interval_s=HEARTBEAT_S)
    try:
        yield running
    finally:
        await running.close_channels()
        await running.child.stop()
        print(running.child.stderr_text())  # pytest shows it only when the test failed


class Agents:
    """One mTLS stub per agent, each presenting that agent's own SVID (as its sidecar would)."""

    def __init__(self, registry: RegistryProcess) -> None:
        self._registry = registry

    async def stub(self, agent: str) -> registry_pb2_grpc.RegistryStub:
        return await self._registry.stub(agent)

    async def register(self, instance: catalog_pb2.Instance) -> registry_pb2.RegisterResponse:
        return await _register(await self.stub(instance.agent), instance)


@pytest.fixture
def agents(registry: RegistryProcess) -> Agents:
    return Agents(registry)


@pytest.fixture
async def stub(registry: RegistryProcess) -> registry_pb2_grpc.RegistryStub:
    """Any agent's view, for listing and watching."""
    return await registry.stub("watcher")


def _instance(agent: str, *capabilities: str, version: str = "1.0.0") -> catalog_pb2.Instance:
    return catalog_pb2.Instance(
        agent=agent,
        version=version,
        peer_address="127.0.0.1:7411",
        capabilities=[
            catalog_pb2.Capability(name=name, input_schema_json='{"type":"object"}', schema_hash=HASH)
            for name in capabilities
        ],
    )


async def _register(
    stub: registry_pb2_grpc.RegistryStub, instance: catalog_pb2.Instance
) -> registry_pb2.RegisterResponse:
    reply: registry_pb2.RegisterResponse = await stub.Register(
        registry_pb2.RegisterRequest(instance=instance), timeout=5
    )
    return reply


async def _listed(stub: registry_pb2_grpc.RegistryStub, **filters: str) -> registry_pb2.ListInstancesResponse:
    reply: registry_pb2.ListInstancesResponse = await stub.ListInstances(
        registry_pb2.ListInstancesRequest(**filters), timeout=5
    )
    return reply


@contextlib.asynccontextmanager
async def _kept_alive(agents: Agents, *registered: tuple[str, str]) -> AsyncIterator[None]:
    """Renews the leases of (agent, instance id) every heartbeat, each with its agent's SVID, as
    sidecars do, while a slow step (a CLI run) happens."""

    async def renew_forever() -> None:
        while True:
            for agent, instance_id in registered:
                await (await agents.stub(agent)).Renew(registry_pb2.RenewRequest(instance_id=instance_id), timeout=5)
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
    """The next catalog event (the controls sent first and the route table sent after the
    catch-up are skipped)."""
    while True:
        event = await asyncio.wait_for(call.read(), timeout_s)
        if not isinstance(event, registry_pb2.WatchEvent):
            pytest.fail("the watch stream ended")
        if event.WhichOneof("change") not in ("routes", "controls"):
            return event


async def test_health_and_reflection_need_tls_but_no_client_certificate(registry: RegistryProcess) -> None:
    channel = registry.channel(None, mtls=False)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "meshwarden.v1.Registry", "meshwarden.v1.Identity"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = [s.name async for r in responses for s in r.list_services_response.service]
    assert {"meshwarden.v1.Registry", "meshwarden.v1.Identity", "grpc.health.v1.Health"} <= set(names)


async def test_register_then_list_with_filters(agents: Agents, stub: registry_pb2_grpc.RegistryStub) -> None:
    billing = await agents.register(_instance("billing", "billing.refund", "billing.quote", version="2.3.1"))
    search = await agents.register(_instance("search", "search.web"))
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
    assert only.spiffe_id == "spiffe://meshwarden.local/agent/billing"  # from its SVID
    assert only.svid_expires_at.ToSeconds() == pytest.approx(time.time() + 3600, abs=30)
    assert [i.agent for i in (await _listed(stub, agent="search")).instances] == ["search"]


async def test_renewed_leases_stay_and_unrenewed_ones_expire_within_three_heartbeats(
    agents: Agents, stub: registry_pb2_grpc.RegistryStub
) -> None:
    kept = await agents.register(_instance("kept", "kept.run"))
    dropper = await agents.stub("dropped")  # enrolled before the clock starts
    async with _kept_alive(agents, ("kept", kept.instance_id)):
        watch = stub.Watch(registry_pb2.WatchRequest(since_revision=kept.revision))
        await asyncio.wait_for(watch.initial_metadata(), 5)
        dropped = await _register(dropper, _instance("dropped", "dropped.run"))
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
        await dropper.Renew(registry_pb2.RenewRequest(instance_id=dropped.instance_id), timeout=5)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_watch_gives_a_snapshot_then_resumes_with_exactly_the_missed_events(
    agents: Agents, stub: registry_pb2_grpc.RegistryStub
) -> None:
    first = await agents.register(_instance("alpha", "alpha.run"))
    second = await agents.register(_instance("beta", "beta.run"))

    watch = stub.Watch(registry_pb2.WatchRequest(since_revision=0))
    snapshot = await _read(watch)
    watch.cancel()
    assert snapshot.WhichOneof("change") == "snapshot"
    assert snapshot.revision == second.revision
    assert sorted(i.instance_id for i in snapshot.snapshot.instances) == sorted([first.instance_id, second.instance_id])

    # While nobody watches: one removal, one addition.
    await (await agents.stub("alpha")).Deregister(
        registry_pb2.DeregisterRequest(instance_id=first.instance_id), timeout=5
    )
    third = await agents.register(_instance("gamma", "gamma.run"))

    resumed = stub.Watch(registry_pb2.WatchRequest(since_revision=snapshot.revision))
    missed = [await _read(resumed), await _read(resumed)]
    assert [e.revision for e in missed] == [snapshot.revision + 1, snapshot.revision + 2]
    assert missed[0].WhichOneof("change") == "removed"
    assert (missed[0].removed.instance_id, missed[0].removed.reason) == (first.instance_id, "deregistered")
    assert missed[1].WhichOneof("change") == "upserted" and missed[1].upserted.instance_id == third.instance_id

    # Then live changes, nothing replayed twice.
    fourth = await agents.register(_instance("delta", "delta.run"))
    live = await _read(resumed)
    assert live.revision == fourth.revision == missed[1].revision + 1
    assert live.upserted.agent == "delta"
    resumed.cancel()


async def test_state_revision_and_ca_survive_a_restart(tmp_path: Path, registry: RegistryProcess) -> None:
    agents = Agents(registry)
    await agents.register(_instance("billing", "billing.refund"))
    last = await agents.register(_instance("search", "search.web"))
    stub = await registry.stub("watcher")
    before = await _listed(stub)
    watcher = stub.Watch(registry_pb2.WatchRequest(since_revision=last.revision))
    await asyncio.wait_for(watcher.initial_metadata(), 5)
    assert await registry.child.stop() == 0  # SIGTERM: a clean exit
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _read(watcher)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE  # told to reconnect

    # Stay down until every stored lease has run out: only the restart's grace keeps them.
    latest_expiry_s = max(i.lease_expires_at.ToNanoseconds() for i in before.instances) / 1e9
    await asyncio.sleep(max(0.0, latest_expiry_s - time.time()) + 0.05)

    restarted = await registry.restart(tmp_path, heartbeat_interval_s=HEARTBEAT_S)
    try:
        assert restarted.ca_fingerprint == registry.ca_fingerprint  # same CA: SVIDs from before stay valid
        for instance in before.instances:  # still there, and renewable by their own agents
            await (await restarted.stub(instance.agent)).Renew(
                registry_pb2.RenewRequest(instance_id=instance.instance_id), timeout=5
            )
        stub = await restarted.stub("watcher")
        after = await _listed(stub)
        assert after.revision == before.revision
        assert sorted(i.instance_id for i in after.instances) == sorted(i.instance_id for i in before.instances)
        newcomer = await _register(await restarted.stub("late"), _instance("late", "late.run"))
        assert newcomer.revision == before.revision + 1
        resumed = stub.Watch(registry_pb2.WatchRequest(since_revision=before.revision))
        event = await _read(resumed)
        assert (event.revision, event.upserted.instance_id) == (newcomer.revision, newcomer.instance_id)
        resumed.cancel()
    finally:
        await restarted.close_channels()
        await restarted.child.stop()
        print(restarted.child.stderr_text())


async def test_invalid_input_names_the_field_and_unknown_renewals_are_not_found(
    registry: RegistryProcess, stub: registry_pb2_grpc.RegistryStub
) -> None:
    cases = [
        (_instance("billing", "billing.refund", version="two"), "instance.version"),
        (_instance("Billing", "billing.refund"), "instance.agent"),
        (_instance("billing", "billing.refund", "billing.refund"), "instance.capabilities[1].name"),
    ]
    broken_schema = _instance("billing", "billing.refund")
    broken_schema.capabilities[0].input_schema_json = "{"
    cases.append((broken_schema, "instance.capabilities[0].input_schema_json"))
    billing = await registry.stub("billing")
    for instance, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _register(billing, instance)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (info.value.details() or "").startswith(field + " ")
    assert (await _listed(stub)).revision == 0  # nothing was stored

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Renew(registry_pb2.RenewRequest(instance_id="0123456789ab"), timeout=5)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    assert "register again" in (info.value.details() or "")


async def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *meshwarden_argv(*args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_agents_list_prints_json_and_a_table_with_identities(registry: RegistryProcess, agents: Agents) -> None:
    billing = await agents.register(_instance("billing", "billing.refund", "billing.quote", version="2.3.1"))
    search = await agents.register(_instance("search", "search.web"))
    operator = ("--registry", registry.listen, "--operator-token-file", str(registry.data_dir / OPERATOR_TOKEN_FILE))
    async with _kept_alive(agents, ("billing", billing.instance_id), ("search", search.instance_id)):
        code, out, err = await _cli(
            "agents", "list", *operator, "--ca-pin", registry.ca_fingerprint, "--output", "json", "--agent", "billing"
        )
        table_code, table, table_err = await _cli("agents", "list", *operator)  # loopback: trust on first use
    assert code == exit_codes.OK, err
    (entry,) = json.loads(out)
    assert entry["agent"] == "billing" and entry["version"] == "2.3.1"
    assert entry["instance_id"] == billing.instance_id
    assert entry["peer_address"] == "127.0.0.1:7411"
    assert entry["spiffe_id"] == "spiffe://meshwarden.local/agent/billing"
    assert entry["svid_expires_at"].endswith("Z") and entry["svid_expires_at"] > entry["lease_expires_at"]
    assert [c["name"] for c in entry["capabilities"]] == ["billing.refund", "billing.quote"]
    assert all(c["schema_hash"] == HASH for c in entry["capabilities"])
    assert entry["lease_expires_at"].endswith("Z") and "T" in entry["lease_expires_at"]
    assert entry["health"] == {"state": "HEALTHY", "reason": "no reports", "reporters": 0, "updated_at": None}
    # This registry admits by open enrolment (loopback): its SVID says so, and so does the listing.
    enrolled = entry["enrolled_by"]
    assert (enrolled["how"], enrolled["principal"], enrolled["token_id"]) == ("open_enrolment", "open_enrolment", None)
    assert enrolled["enrolled_at"].endswith("Z")
    assert entry["agent_activity"] == {"sessions_running": 0, "tasks_running": 0}

    assert table_code == exit_codes.OK, table_err
    lines = table.splitlines()
    assert lines[0].split() == [
        "AGENT",
        "VERSION",
        "INSTANCE",
        "HEALTH",
        "PEER",
        "CAPABILITIES",
        "LEASE-EXPIRES-IN",
        "SVID-EXPIRES-IN",
        "SPIFFE-ID",
        "ENROLLED-BY",
        "WHY",
    ]
    billing_line = next(line for line in lines[1:] if "billing.refund,billing.quote" in line)
    assert billing_line.split()[3] == "HEALTHY" and billing_line.endswith("no reports")  # no caller reported
    assert billing_line.split()[-3] == "open_enrolment"
    assert billing_line.split()[-4] == "spiffe://meshwarden.local/agent/billing"
    assert billing_line.split()[-5].startswith("59m")
    # then what each agent has in progress: nothing here
    assert lines[3] == "" and lines[4].split() == ["AGENT", "INSTANCES", "SESSIONS-RUNNING", "TASKS-RUNNING"]
    assert [line.split() for line in lines[5:]] == [["billing", "1", "0", "0"], ["search", "1", "0", "0"]]
    assert registry.ca_fingerprint in table_err  # the CA trusted on first use is named, to be pinned


async def test_agents_list_needs_the_operator_token(registry: RegistryProcess) -> None:
    code, _out, err = await _cli(
        "agents", "list", "--registry", registry.listen, env={"MESHWARDEN_OPERATOR_TOKEN": "mwo1.guess"}
    )
    assert code == exit_codes.FAILED
    assert "UNAUTHENTICATED" in err and "the operator token sent is not this registry's" in err


async def test_agents_list_exits_3_when_the_registry_is_unreachable() -> None:
    # Port 1 (tcpmux) is privileged and has nothing listening on a test machine.
    code, _out, err = await _cli(
        "agents", "list", "--registry", "127.0.0.1:1", "--timeout", "3", env={"MESHWARDEN_OPERATOR_TOKEN": "t"}
    )
    assert code == exit_codes.UNREACHABLE
    assert "cannot reach the registry at 127.0.0.1:1" in err
