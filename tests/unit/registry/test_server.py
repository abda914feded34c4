"""registry.api and registry.app in-process, over real gRPC (TLS and mTLS) on loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshwarden.addresses import HostPort
from meshwarden.identity.credentials import server_credentials
from meshwarden.identity.spiffe_ids import agent_id, registry_id
from meshwarden.registry import api, app, wire
from meshwarden.registry.audit import Audit
from meshwarden.registry.authz import Authorizer
from meshwarden.registry.bundles import Bundles
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.config import RegistryConfig
from meshwarden.registry.control_acks import Acknowledgements
from meshwarden.registry.controls import Controls
from meshwarden.registry.errors import InvalidInput, PermissionDenied, StoreError, Unauthenticated, UnknownInstance
from meshwarden.registry.health_reports import HealthReports
from meshwarden.registry.issuer import Issuer
from meshwarden.registry.model import CatalogEvent
from meshwarden.registry.operators import OperatorCredential
from meshwarden.registry.receipts import Receipts
from meshwarden.registry.rescue import status_for
from meshwarden.registry.routes import Routes
from meshwarden.registry.store.sqlite import open_sqlite
from meshwarden.registry.watch_hub import WatchEnded, WatchHub
from meshwarden.registry.wire import spec_from_proto
from meshwarden.registry_client import RegistryTrust, registry_channel, registry_stub
from meshwarden.schema_hash import schema_hash
from meshwarden.v1 import catalog_pb2, registry_pb2, registry_pb2_grpc
from tests.identity_helpers import FakeClock, enrol
from tests.policy_helpers import signed_bytes, write_bundle

HASH = schema_hash({}, {})


def _instance(agent: str = "billing") -> catalog_pb2.Instance:
    return catalog_pb2.Instance(
        agent=agent,
        version="1.0.0",
        peer_address="127.0.0.1:7411",
        capabilities=[catalog_pb2.Capability(name=f"{agent}.run", schema_hash=HASH)],
    )


@dataclass
class Running:
    address: str
    stub: registry_pb2_grpc.RegistryStub
    clock: FakeClock


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    """A registry served by registry.app, and a stub holding agent billing's SVID over mTLS."""
    # Starting at the real time: the registry signs SVIDs with this clock, and TLS checks them
    # against the real one.
    clock, stop, ready = FakeClock(time.time()), asyncio.Event(), asyncio.Future[app.Ready]()
    config = RegistryConfig(
        listen=HostPort("127.0.0.1", 0), data_dir=tmp_path, watch_queue_events=4, allow_unverified_bundles=True
    )
    task = asyncio.create_task(app.serve(config, clock, stop=stop, on_ready=ready.set_result))
    bound = await asyncio.wait_for(ready, 10)
    trust = RegistryTrust(bound.trust_domain, bound.bundle_pem)
    svid = await enrol(str(bound.listen), trust, "billing")
    async with registry_channel(str(bound.mtls), RegistryTrust(bound.trust_domain, bound.bundle_pem, svid)) as channel:
        yield Running(str(bound.mtls), registry_stub(channel), clock)
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_register_renew_list_deregister(running: Running) -> None:
    reply = await running.stub.Register(registry_pb2.RegisterRequest(instance=_instance()))
    assert reply.revision == 1 and len(reply.instance_id) == 12
    assert reply.lease_ttl.ToTimedelta().total_seconds() == 5.0
    assert reply.heartbeat_interval.ToTimedelta().total_seconds() == 2.0
    await running.stub.Renew(registry_pb2.RenewRequest(instance_id=reply.instance_id))
    listed = await running.stub.ListInstances(registry_pb2.ListInstancesRequest(capability="billing.run"))
    assert [i.instance_id for i in listed.instances] == [reply.instance_id]
    assert listed.instances[0].lease_expires_at.ToSeconds() == int(running.clock.now + 5)
    # Who the instance is comes from the SVID presented, not from the request.
    assert listed.instances[0].spiffe_id == "spiffe://meshwarden.local/agent/billing"
    assert listed.instances[0].svid_expires_at.ToSeconds() == pytest.approx(running.clock.now + 3600, abs=2)
    await running.stub.Deregister(registry_pb2.DeregisterRequest(instance_id=reply.instance_id))
    listed = await running.stub.ListInstances(registry_pb2.ListInstancesRequest())
    assert list(listed.instances) == [] and listed.revision == 2


async def test_errors_become_statuses(running: Running) -> None:
    bad = _instance()
    bad.capabilities[0].schema_hash = "sha256:nope"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await running.stub.Register(registry_pb2.RegisterRequest(instance=bad))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "instance.capabilities[0].schema_hash" in (info.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await running.stub.Renew(registry_pb2.RenewRequest(instance_id="gone"))
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    assert "lease expired or unknown; register again" in (info.value.details() or "")


async def test_bundle_reports_page_by_agent_and_instance_and_gone_sidecars_can_be_left_out(running: Running) -> None:
    ids = [(await running.stub.Register(registry_pb2.RegisterRequest(instance=_instance()))).instance_id for _ in "abc"]
    for instance_id in ids:
        await running.stub.ReportBundleStatus(registry_pb2.BundleStatusReport(instance_id=instance_id))
    await running.stub.Deregister(registry_pb2.DeregisterRequest(instance_id=ids[0]))
    running.clock.now += 60  # its report is stale and it left the catalog: not live

    async def listed(**paging: object) -> tuple[list[tuple[str, bool]], str]:
        reply = await running.stub.ListBundleStatus(registry_pb2.ListBundleStatusRequest(**paging))
        return [(s.instance_id, s.live) for s in reply.sidecars], reply.next_cursor

    everything, none = await listed()
    assert everything == sorted((i, i != ids[0]) for i in ids) and not none
    first, cursor = await listed(limit=2)
    rest, after_rest = await listed(limit=2, cursor=cursor)
    assert first + rest == everything and cursor and not after_rest
    live, _ = await listed(live_only=True)
    assert live == [(i, True) for i in sorted(ids[1:])]
    for bad in ({"cursor": "nonsense"}, {"limit": 10_001}):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await listed(**bad)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_an_agent_registers_only_itself(running: Running) -> None:
    claimed = _instance("search")
    claimed.spiffe_id = "spiffe://meshwarden.local/agent/search"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await running.stub.Register(registry_pb2.RegisterRequest(instance=claimed))
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "spiffe://meshwarden.local/agent/billing may not" in (info.value.details() or "")
    assert "'search'" in (info.value.details() or "")


async def test_watch_sends_initial_metadata_then_live_changes(running: Running) -> None:
    await running.stub.Register(registry_pb2.RegisterRequest(instance=_instance()))
    call = running.stub.Watch(registry_pb2.WatchRequest(since_revision=1))  # nothing missed
    await asyncio.wait_for(call.initial_metadata(), 5)
    controls = await asyncio.wait_for(call.read(), 5)  # the kill switches in force come first
    assert controls.WhichOneof("change") == "controls" and not controls.controls.kill_switches
    routes = await asyncio.wait_for(call.read(), 5)  # every route (none yet) after the catch-up
    assert routes.WhichOneof("change") == "routes" and routes.routes.full and not routes.routes.routes
    second = await running.stub.Register(registry_pb2.RegisterRequest(instance=_instance()))
    event = await asyncio.wait_for(call.read(), 5)
    assert event.revision == 2 and event.upserted.instance_id == second.instance_id
    call.cancel()


class Gate:
    """Publishes catalog events to the hub, or holds them until `release` (no await between)."""

    def __init__(self, hub: WatchHub) -> None:
        self._hub, self.held, self.holding = hub, list[CatalogEvent](), False

    def publish(self, event: CatalogEvent) -> None:
        if self.holding:
            self.held.append(event)
        else:
            self._hub.publish(event)

    def release(self) -> None:
        """Publishes what was held, each change as a batch of its own (so each takes a place
        in every watcher's queue, as changes published in separate turns do)."""
        self.holding = False
        for event in self.held:
            self._hub.publish(event)
            self._hub.flush()
        self.held.clear()


@dataclass
class Direct:
    """The Registry service on a loopback port whose catalog the test can also drive directly."""

    catalog: Catalog
    gate: Gate
    stub: registry_pb2_grpc.RegistryStub
    bundles: Bundles


@pytest.fixture
async def direct(tmp_path: Path) -> AsyncIterator[Direct]:
    """The Registry service on an mTLS port of its own, called with agent billing's SVID."""
    stores = await open_sqlite(tmp_path, event_log_retention=10)
    clock, hub = FakeClock(), WatchHub(max_queued_per_watcher=4)
    gate = Gate(hub)
    catalog = Catalog(stores.catalog, stores.leases, clock, lease_ttl_s=5.0, publish=gate.publish)
    audit = Audit(stores.audit, clock)
    bundles, routes = (
        Bundles(stores.bundles, clock, audit, hub.publish),
        Routes(stores.routes, clock, audit, hub.publish),
    )
    controls, acks, health = (
        Controls(stores.controls, clock, audit, hub.publish),
        Acknowledgements(clock),
        HealthReports(clock),
    )
    issuer = Issuer.ephemeral("mesh.test", FakeClock(time.time()))
    receipts = Receipts(stores.receipts, clock, trust_bundle_pem=issuer.bundle_pem)
    registry_svid = issuer.issue(registry_id("mesh.test"), 600)
    authorizer = Authorizer("mesh.test", OperatorCredential.load_or_create(tmp_path), mtls_address="", ca_key_id=b"")
    server = grpc.aio.server(interceptors=[api.Authorization(authorizer)])
    handlers = api.service.handlers_of(
        api.CatalogApi(catalog, health, heartbeat_interval_s=2.0).handlers(),
        api.WatchApi(catalog, hub, bundles, routes, controls, acks).handlers(),
        api.BundlesApi(bundles, catalog, hub, receipts).handlers(),
        api.RoutesApi(routes, hub).handlers(),
        api.HealthApi(health, catalog, receipts).handlers(),
    )
    api.service.add_service(server, api.REGISTRY, handlers)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(lambda: registry_svid, require_client_auth=True))
    await server.start()
    trust = RegistryTrust("mesh.test", issuer.bundle_pem, issuer.issue(agent_id("mesh.test", "billing"), 600))
    try:
        async with registry_channel(f"127.0.0.1:{port}", trust) as channel:
            yield Direct(catalog, gate, registry_stub(channel), bundles)
    finally:
        await server.stop(None)
        await stores.close()


async def test_a_watcher_that_falls_behind_is_cut_off_with_unavailable(direct: Direct) -> None:
    await direct.catalog.register(spec_from_proto(_instance()))
    call = direct.stub.Watch(registry_pb2.WatchRequest(since_revision=0))
    first = await _first_catalog_event(call)
    assert first.WhichOneof("change") == "snapshot" and first.revision == 1
    direct.gate.holding = True
    for _ in range(6):
        await direct.catalog.register(spec_from_proto(_instance()))
    direct.gate.release()  # no await in between: the stream cannot drain, its queue (4) overflows
    while True:  # the controls and routes the stream sends first, then the status
        try:
            event = await asyncio.wait_for(call.read(), 5)
        except grpc.aio.AioRpcError as info:
            assert info.code() is grpc.StatusCode.UNAVAILABLE
            assert "fell behind" in (info.details() or "")
            break
        assert event.WhichOneof("change") in ("controls", "routes")
    # Reconnecting with the last revision applied replays exactly what was missed.
    resumed = direct.stub.Watch(registry_pb2.WatchRequest(since_revision=first.revision))
    replayed = [(await asyncio.wait_for(resumed.read(), 5)) for _ in range(8)]
    assert [e.revision for e in replayed if e.WhichOneof("change") == "upserted"] == [2, 3, 4, 5, 6, 7]
    resumed.cancel()


async def test_batched_watchers_get_what_piled_up_in_one_message_each_change_encoded_once(
    direct: Direct, monkeypatch: pytest.MonkeyPatch
) -> None:
    await direct.catalog.register(spec_from_proto(_instance()))
    watchers = [direct.stub.Watch(registry_pb2.WatchRequest(since_revision=0, batched=True)) for _ in range(2)]
    for call in watchers:
        await _first_catalog_event(call)  # the snapshot at revision 1
        assert (await asyncio.wait_for(call.read(), 5)).WhichOneof("change") == "routes"
    encoded = []
    real = wire.event_to_proto
    monkeypatch.setattr(wire, "event_to_proto", lambda event: encoded.append(event.revision) or real(event))
    direct.gate.holding = True
    for _ in range(3):
        await direct.catalog.register(spec_from_proto(_instance()))
    direct.gate.release()  # three batches queued for each watcher before either stream runs
    for call in watchers:
        event = await asyncio.wait_for(call.read(), 5)
        assert event.WhichOneof("change") == "changes" and event.revision == 4
        assert [(e.revision, e.WhichOneof("change")) for e in event.changes.events] == [
            (2, "upserted"),
            (3, "upserted"),
            (4, "upserted"),
        ]
        call.cancel()
    assert sorted(encoded) == [2, 3, 4]  # once for both watchers
    resumed = direct.stub.Watch(registry_pb2.WatchRequest(since_revision=2, batched=True))
    replay = await _first_catalog_event(resumed)
    assert replay.revision == 4 and [e.revision for e in replay.changes.events] == [3, 4]
    resumed.cancel()


async def _first_catalog_event(call: object) -> registry_pb2.WatchEvent:
    """The first event of a watch stream after the controls in force."""
    event: registry_pb2.WatchEvent = await asyncio.wait_for(call.read(), 5)  # type: ignore[attr-defined]
    assert event.WhichOneof("change") == "controls"
    return await asyncio.wait_for(call.read(), 5)  # type: ignore[attr-defined, no-any-return]


async def test_every_watcher_gets_a_new_bundle_encoded_once_for_all(
    direct: Direct, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await direct.catalog.register(spec_from_proto(_instance()))
    watchers = [direct.stub.Watch(registry_pb2.WatchRequest(since_revision=0)) for _ in range(2)]
    for call in watchers:
        await _first_catalog_event(call)
    encoded = []
    real = wire.bundle_to_proto
    monkeypatch.setattr(wire, "bundle_to_proto", lambda *a, **k: encoded.append(1) or real(*a, **k))
    write_bundle(tmp_path / "bundle")
    stored = await direct.bundles.push(signed_bytes(tmp_path / "bundle", Ed25519PrivateKey.generate()))
    for call in watchers:
        while (event := await asyncio.wait_for(call.read(), 5)).WhichOneof("change") != "bundle":
            pass
        assert event.revision == 1  # the catalog's, as before
        assert (event.bundle.revision, event.bundle.digest) == (stored.revision, stored.digest)
        assert event.bundle.artifact == stored.artifact
        call.cancel()
    assert len(encoded) == 1


async def test_a_watcher_ahead_of_the_registry_gets_a_snapshot(direct: Direct) -> None:
    await direct.catalog.register(spec_from_proto(_instance()))
    call = direct.stub.Watch(registry_pb2.WatchRequest(since_revision=99))
    event = await _first_catalog_event(call)
    assert event.WhichOneof("change") == "snapshot"
    assert event.revision == 1 and len(event.snapshot.instances) == 1
    call.cancel()


async def test_a_watcher_behind_the_retained_log_gets_a_snapshot(direct: Direct) -> None:
    for _ in range(12):  # retention is 10: revisions 1 and 2 are gone
        await direct.catalog.register(spec_from_proto(_instance()))
    call = direct.stub.Watch(registry_pb2.WatchRequest(since_revision=1))
    event = await _first_catalog_event(call)
    assert event.WhichOneof("change") == "snapshot" and event.revision == 12
    call.cancel()
    call = direct.stub.Watch(registry_pb2.WatchRequest(since_revision=2))
    event = await _first_catalog_event(call)
    assert event.WhichOneof("change") == "upserted" and event.revision == 3
    call.cancel()


async def test_unexpected_errors_are_internal_and_the_server_keeps_serving(direct: Direct) -> None:
    real = direct.catalog.list_instances

    async def broken(**filters: str) -> object:
        raise RuntimeError("secret internal detail")

    direct.catalog.list_instances = broken  # type: ignore[assignment, method-assign]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await direct.stub.ListInstances(registry_pb2.ListInstancesRequest())
    assert info.value.code() is grpc.StatusCode.INTERNAL
    assert "secret" not in (info.value.details() or "")
    direct.catalog.list_instances = real  # type: ignore[method-assign]
    reply = await direct.stub.Register(registry_pb2.RegisterRequest(instance=_instance()))
    assert reply.revision == 1


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidInput("instance.agent", "is bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (Unauthenticated("no SVID"), grpc.StatusCode.UNAUTHENTICATED),
        (PermissionDenied("not yours"), grpc.StatusCode.PERMISSION_DENIED),
        (UnknownInstance("x"), grpc.StatusCode.NOT_FOUND),
        (WatchEnded("fell behind"), grpc.StatusCode.UNAVAILABLE),
        (StoreError("disk full"), grpc.StatusCode.UNAVAILABLE),
        (KeyError("bug"), grpc.StatusCode.INTERNAL),
    ],
)
def test_status_for(error: Exception, code: grpc.StatusCode) -> None:
    assert status_for(error)[0] is code


async def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    stop, ready = asyncio.Event(), asyncio.Future[app.Ready]()
    first = asyncio.create_task(
        app.serve(
            RegistryConfig(listen=HostPort("127.0.0.1", 0), data_dir=tmp_path / "a", allow_unverified_bundles=True),
            FakeClock(),
            stop=stop,
            on_ready=ready.set_result,
        )
    )
    bound = (await asyncio.wait_for(ready, 10)).listen
    try:
        with pytest.raises(app.StartError, match="cannot listen on 127.0.0.1"):
            await app.serve(
                RegistryConfig(listen=bound, data_dir=tmp_path / "b", allow_unverified_bundles=True),
                FakeClock(),
                stop=asyncio.Event(),
            )
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(first, 10)


async def test_health_reports_show_in_the_listing_and_default_timeouts_round_trip(running: Running) -> None:
    declared = _instance()
    declared.capabilities[0].default_timeout_ms = 2500
    reply = await running.stub.Register(registry_pb2.RegisterRequest(instance=declared))
    listed = await running.stub.ListInstances(registry_pb2.ListInstancesRequest())
    assert listed.instances[0].capabilities[0].default_timeout_ms == 2500
    assert [(h.instance_id, h.state, h.reason, h.reporters) for h in listed.health] == [
        (reply.instance_id, catalog_pb2.HEALTH_STATE_HEALTHY, "no reports", 0)
    ]
    stranger = registry_pb2.HealthReport(reporter_instance_id="kb-caller-1")  # another agent's name space
    with pytest.raises(grpc.aio.AioRpcError) as unowned:  # and no receipt chain this SVID shipped
        await running.stub.ReportHealth(stranger)
    assert unowned.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    await running.stub.ReportHealth(
        registry_pb2.HealthReport(
            reporter_instance_id="billing-caller-1",  # a pure caller: not in the catalog, in its name space
            instances=[
                catalog_pb2.InstanceHealth(
                    instance_id=reply.instance_id,
                    state=catalog_pb2.HEALTH_STATE_ISOLATED,
                    reason="3 consecutive failures",
                )
            ],
        )
    )
    (health,) = (await running.stub.ListInstances(registry_pb2.ListInstancesRequest())).health
    assert (health.state, health.reason, health.reporters) == (
        catalog_pb2.HEALTH_STATE_ISOLATED,
        "3 consecutive failures",
        1,
    )
    assert health.updated_at.ToSeconds() == int(running.clock.now)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await running.stub.ReportHealth(
            registry_pb2.HealthReport(
                reporter_instance_id=reply.instance_id, instances=[catalog_pb2.InstanceHealth(instance_id="x")]
            )
        )
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "instances[0].state" in (info.value.details() or "")
    too_long = _instance()
    too_long.capabilities[0].default_timeout_ms = 3_600_001
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await running.stub.Register(registry_pb2.RegisterRequest(instance=too_long))
    assert "instance.capabilities[0].default_timeout_ms" in (info.value.details() or "")
