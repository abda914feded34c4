"""Build a sidecar from its configuration and run it until SIGTERM or SIGINT.

Two gRPC servers: the local API for the agent (meshwarden.v1.Sidecar) and the peer endpoint
for other sidecars (meshwarden.v1.Peer); both also serve health and reflection. The admin
HTTP port (metrics, liveness, readiness) unless it is off. Background loops: the lease, the
registry watch, and with --discovery consul the Consul registration and watch
(sidecar/discovery/). Tracing, when an OTLP endpoint is configured, exports on its own thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
from collections.abc import Mapping
from pathlib import Path

import grpc

from meshwarden import connection_liveness
from meshwarden.addresses import ListenAddress, UnixSocket
from meshwarden.admin_http import AdminBindError, AdminServer
from meshwarden.clock import SystemClock
from meshwarden.identity.credentials import server_credentials
from meshwarden.ready import announce_ready
from meshwarden.sidecar import catalog_watch, pipeline, registry_change, svids, tracing_setup
from meshwarden.sidecar.agent_app import AgentApp
from meshwarden.sidecar.agent_watch import AgentWatch, WatchSettings
from meshwarden.sidecar.bundle_loader import BundleLoader, BundleStatus, KeysError, PolicyHolder, load_trusted_keys
from meshwarden.sidecar.call_metrics import SidecarMetrics, SidecarState
from meshwarden.sidecar.catalog import Catalog
from meshwarden.sidecar.config import SidecarConfig
from meshwarden.sidecar.controls import Controls
from meshwarden.sidecar.controls_ack import Acknowledger
from meshwarden.sidecar.data_dir_lock import DataDirInUse
from meshwarden.sidecar.data_dir_lock import acquire as acquire_data_dir
from meshwarden.sidecar.discovery.consul_discovery import ConsulDiscovery
from meshwarden.sidecar.discovery.source import Discovery, RegistryDiscovery
from meshwarden.sidecar.edges.gateway_http import GatewayBindError, GatewayServer, RouteFamily
from meshwarden.sidecar.health_reporter import HealthReporter
from meshwarden.sidecar.instance_identity import FILE_NAME as INSTANCE_ID_FILE
from meshwarden.sidecar.instance_identity import stable_instance_id
from meshwarden.sidecar.latency import LatencyBoard
from meshwarden.sidecar.lease import Lease
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.sidecar.local_api import LocalApi
from meshwarden.sidecar.local_auth import RequireToken, TokenError, read_token
from meshwarden.sidecar.outcome_reporter import OutcomeReporter
from meshwarden.sidecar.peer_api import PeerApi
from meshwarden.sidecar.peer_channels import PeerChannels
from meshwarden.sidecar.receipt_shipper import ReceiptShipper, ShippingSettings
from meshwarden.sidecar.receipt_spool import ReceiptSpool, SpoolError, SpoolReader
from meshwarden.sidecar.registry_link import RegistryLink
from meshwarden.sidecar.runtime import Runtime
from meshwarden.sidecar.schemas import SchemaCache
from meshwarden.sidecar.spool_backlog import BacklogCollector, SpoolCap, SpoolWatch
from meshwarden.sidecar.stages.breaker import BreakerBoard
from meshwarden.standard_services import add_standard_services, set_serving
from meshwarden.stop_signals import stop_on_signals
from meshwarden.tasks import cancel_all, supervise
from meshwarden.v1 import controls_pb2, peer_pb2, peer_pb2_grpc, registry_pb2, sidecar_pb2, sidecar_pb2_grpc

log = logging.getLogger(__name__)

LOCAL_SERVICE = sidecar_pb2.DESCRIPTOR.services_by_name["Sidecar"].full_name
PEER_SERVICE = peer_pb2.DESCRIPTOR.services_by_name["Peer"].full_name


BUNDLE_REPORT_INTERVAL_S = 15.0  # under the registry's REPORT_FRESH_S
RECEIPT_FLUSH_S = 3.0  # at shutdown, the last receipts get this long to reach the registry
# How long a starting sidecar waits for the registry's kill switches before it serves anyway
# (with those persisted at its last stop, if any): bounded, so a registry outage cannot keep
# a sidecar from starting.
CONTROLS_FIRST_WAIT_S = 2.0


class StartError(RuntimeError):
    """The sidecar cannot start as configured; the message says why and what to do."""


def _bind_local(server: grpc.aio.Server, address: ListenAddress) -> str:
    """Binds the local API; a Unix socket is created 0600 (only this user may speak as the agent)."""
    if isinstance(address, UnixSocket):
        path = Path(address.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        previous = os.umask(0o177)
        try:
            _bind(server, str(address), "local API", None)
        finally:
            os.umask(previous)
        return str(address)
    port = _bind(server, str(address), "local API", None)
    return f"{address.host}:{port}"


def _bind(server: grpc.aio.Server, address: str, what: str, credentials: grpc.ServerCredentials | None) -> int:
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as exc:
        raise StartError(f"cannot listen on {address} for the {what}: {exc}; is it in use?") from exc
    return int(port)


async def serve(config: SidecarConfig) -> None:
    clock = SystemClock()
    try:  # first: nothing in the directory is touched before this sidecar holds it
        data_dir_lock = acquire_data_dir(config.data_dir, config.agent)
    except DataDirInUse as exc:
        raise StartError(str(exc)) from exc
    if not config.spiffe_endpoint_socket and config.trust_bundle is None:  # identity learned from --registry
        changed = await asyncio.to_thread(
            registry_change.forget_if_changed, config.data_dir / "identity", config.registry
        )
        if changed:  # a new registry holds no chain of the old instance: start a new one
            (config.data_dir / INSTANCE_ID_FILE).unlink(missing_ok=True)
    if not config.instance_id:  # kept across restarts: a kill switch on this instance must hold
        config = dataclasses.replace(config, instance_id=stable_instance_id(config.data_dir, config.agent))
    try:
        supply = await svids.obtain(config, clock)
    except svids.IdentityError as exc:
        raise StartError(f"no identity for agent {config.agent}: {exc}") from exc
    current_svid = supply.svids.current
    token = read_api_token(config)
    options = [
        ("grpc.max_receive_message_length", config.grpc_message_limit_bytes),
        ("grpc.max_send_message_length", config.grpc_message_limit_bytes),
    ]
    # so_reuseport=0: a second sidecar on the same port must fail to bind, not share it.
    server_options = [*options, ("grpc.so_reuseport", 0)]
    interceptors = [RequireToken(token)] if token else []
    local_server = grpc.aio.server(options=server_options, interceptors=interceptors)
    peer_server = grpc.aio.server(options=[*server_options, *connection_liveness.SERVER_OPTIONS])
    liveness = connection_liveness.channel_options(config.keepalive_s, config.connect_timeout_s)
    listen = _bind_local(local_server, config.listen)
    # mTLS only: a peer must present an SVID of this trust domain; no plaintext peer port exists.
    peer_credentials = server_credentials(current_svid, require_client_auth=True)
    peer_port = _bind(peer_server, str(config.peer_listen), "peer endpoint", peer_credentials)
    peer_bound = f"{config.peer_listen.host}:{peer_port}"
    peer_address = config.peer_advertise or peer_bound  # what the catalog tells other sidecars to dial

    spiffe_id = current_svid().spiffe_id
    local = LocalAgent(config.agent, config.instance_id, peer_address, spiffe_id=spiffe_id)
    agent_app = AgentApp(str(config.app), options)
    registry = RegistryLink(supply.registry_mtls, config.trust_domain, current_svid, liveness)
    spool = _open_spool(config, spiffe_id)
    rt = Runtime(
        config=config,
        clock=clock,
        rng=random.Random(),
        catalog=Catalog(),
        schemas=SchemaCache(),
        local=local,
        peer_channels=PeerChannels([*options, *liveness], current_svid),
        agent_app=agent_app,
        policy=PolicyHolder(),
        breakers=BreakerBoard(
            config.breaker_failures,
            config.breaker_reset_s,
            failure_rate=config.breaker_failure_rate,
            window_s=config.breaker_window_s,
            min_calls=config.breaker_min_calls,
            now=clock.monotonic,
        ),
        latency=LatencyBoard(clock.monotonic),
        receipts=spool,
        tracing=tracing_setup.build(config.tracing, agent=config.agent, instance_id=config.instance_id),
        metrics=SidecarMetrics(),
        controls=Controls(config.data_dir, clock.wall),
    )
    if rt.tracing is not None:
        log.info(
            "tracing: spans to %s over OTLP %s, sampler %s (ratio %g); failed calls are always exported",
            config.tracing.endpoint,
            config.tracing.protocol,
            config.tracing.sampler,
            config.tracing.sampler_ratio,
        )
    rt.metrics.watch(
        SidecarState(
            breaker_states=lambda: _live_breaker_states(rt),
            bundle_revision=lambda: rt.policy.active.revision if rt.policy.active is not None else 0,
            catalog_revision=lambda: rt.catalog.revision,
        )
    )
    health = HealthReporter(registry.stub, local.instance_id, rt.catalog, rt.breakers, rt.latency, clock)
    # Kill switches and isolations last known, enforced before any port serves a call.
    rt.controls.on_isolation(rt.catalog.isolate)
    rt.controls.load_last()
    acknowledger = Acknowledger(registry.controls, config.instance_id)

    def on_controls(update: controls_pb2.ControlsUpdate) -> None:
        rt.controls.apply(update)
        acknowledger.acknowledge(update.revision)

    lease = Lease(registry.stub, local)

    async def readiness_changed() -> None:
        await readiness()

    watch = AgentWatch(agent_app, local, lease.withdraw, readiness_changed, WatchSettings())
    discovery = _discovery(config, rt)
    local_health = add_standard_services(local_server, [LOCAL_SERVICE])
    peer_health = add_standard_services(peer_server, [PEER_SERVICE])

    def not_ready_because() -> str:
        if watch.gone_because:  # the agent registered, then stopped answering
            return watch.gone_because
        # Ready once a policy revision is active: until then every call would be denied.
        if rt.policy.active is not None or config.allow_without_policy:
            return ""
        return "no policy bundle is active yet (every call would be denied)"

    async def readiness() -> None:
        ready = not not_ready_because()
        await set_serving(local_health, [LOCAL_SERVICE], ready)
        await set_serving(peer_health, [PEER_SERVICE], ready)

    async def report(status: BundleStatus) -> None:
        await readiness()
        await _report_bundle_status(registry, local.instance_id, status)

    async def report_forever() -> None:  # also a liveness signal for sidecars not in the catalog
        while True:
            await _report_bundle_status(registry, local.instance_id, rt.policy.status)
            await asyncio.sleep(BUNDLE_REPORT_INTERVAL_S)

    try:
        trusted_keys = load_trusted_keys(config.bundle_keys)
    except KeysError as exc:
        raise StartError(str(exc)) from exc
    loader = BundleLoader(
        rt.policy,
        agent=config.agent,
        capabilities=local.capability_names,
        trusted_keys=trusted_keys,
        data_dir=config.data_dir,
        report=report,
    )
    loader.load_last_good()

    async def on_registered() -> None:
        loader.rebuild_for_capabilities()
        await report(rt.policy.status)

    shipper: ReceiptShipper | None = None  # built below, once the loops it joins are

    async def ship_receipts_now(timeout_s: float) -> None:
        if shipper is not None:
            await shipper.ship_now(timeout_s)

    sidecar_pb2_grpc.add_SidecarServicer_to_server(
        LocalApi(
            config,
            pipeline.outbound(rt),
            rt,
            lease,
            on_registered,
            OutcomeReporter(registry, ship_receipts_now),
            health=health.current,
        ),
        local_server,
    )
    peer_pb2_grpc.add_PeerServicer_to_server(PeerApi(config, pipeline.inbound(rt), clock), peer_server)

    admin = AdminServer("sidecar", rt.metrics.registry, not_ready_because)
    try:
        admin_address = await admin.serve(config.admin_listen)
    except AdminBindError as exc:
        raise StartError(str(exc)) from exc
    gateway = GatewayServer(_gateway_families(rt), token, config.max_payload_bytes)
    try:
        gateway_address = await gateway.start(config.gateway_listen) if config.gateway_listen else "off"
    except GatewayBindError as exc:
        await admin.stop()
        raise StartError(str(exc)) from exc
    tasks = [
        supervise("lease", lease.run),
        supervise("agent-watch", watch.run),
        supervise("bundle-status", report_forever),
        supervise("health-reports", health.run),
        supervise(
            "catalog-watch",
            lambda: catalog_watch.run(
                registry.stub,
                discovery.registry_view,
                rt.rng,
                lambda bundle: loader.offer(bundle.artifact, bundle.revision),
                lambda: rt.policy.status.active_revision,
                rt.routes,
                on_controls,
                config.instance_id,
                acknowledger.watch_lost,
            ),
        ),
        *(supervise(name, loop) for name, loop in discovery.loops().items()),
    ]
    settings = ShippingSettings(interval_s=config.receipt_ship_interval_s, batch_receipts=config.receipt_batch_size)
    if spool is not None:
        backlog = SpoolWatch(
            spool,
            SpoolCap(max_bytes=config.receipt_spool_max_bytes, max_age_s=config.receipt_spool_max_age_s),
            clock.wall,
        )
        rt.metrics.registry.register(BacklogCollector(backlog.last, clock.wall))
        shipper = ReceiptShipper(
            SpoolReader(spool.path, config.receipt_sync),
            registry.receipts_stub,
            current_svid,
            settings,
            rt.rng,
            on_backlog=backlog.update,
        )
        tasks.append(supervise("receipt-shipping", shipper.run))
    # The registry's kill switches before the first call: the watch stream sends them first.
    await _controls_first(rt.controls, CONTROLS_FIRST_WAIT_S)
    await local_server.start()
    await peer_server.start()
    await readiness()
    _warn_about_policy(config, rt.policy, trusted_keys)
    _warn_about_local_api(config, listen, token is not None)
    if config.consul is not None:
        log.info("discovery through Consul at %s (registry catalog kept as the operator view)", config.consul.base_url)
    log.info(
        "sidecar for agent %s as %s (instance %s): local API %s, peer %s (mTLS), agent app %s, registry %s",
        config.agent,
        spiffe_id,
        config.instance_id,
        listen,
        peer_address,
        config.app,
        config.registry,
    )
    announce_ready(
        "sidecar",
        listen=listen,
        peer=peer_address,
        peer_bound=peer_bound,
        instance_id=config.instance_id,
        agent=config.agent,
        spiffe_id=spiffe_id,
        workload_api=supply.workload_socket,
        discovery=config.discovery,
        admin=str(admin_address) if admin_address else "off",
        gateway=gateway_address,
    )

    await stop_on_signals().wait()
    log.info("stopping: deregistering and draining calls")
    local.close()  # an agent registering again now would re-enter discovery after the withdrawal
    await set_serving(local_health, [LOCAL_SERVICE], False)
    await set_serving(peer_health, [PEER_SERVICE], False)
    await asyncio.gather(lease.deregister(), discovery.withdraw())
    await asyncio.gather(local_server.stop(grace=2.0), peer_server.stop(grace=2.0))
    await cancel_all(tasks)
    if shipper is not None and spool is not None:
        # Every call has ended, so its receipts are in the spool: a last round, on a connection
        # of its own (a batch of the cancelled loop may still be finishing in its thread).
        last = ReceiptShipper(
            SpoolReader(spool.path, config.receipt_sync), registry.receipts_stub, current_svid, settings, rt.rng
        )
        await last.flush(RECEIPT_FLUSH_S)
        last.close()
        shipper.close()
    if spool is not None:
        spool.close()
    await gateway.stop()
    await admin.stop()
    if rt.tracing is not None:
        rt.tracing.shutdown()  # flushes queued spans, for 3 s at most
    await acknowledger.close()
    await rt.controls.flush()
    await rt.peer_channels.close()
    await agent_app.close()
    await registry.close()
    await discovery.close()
    await supply.close()
    log.info("stopped")
    data_dir_lock.close()


def _gateway_families(rt: Runtime) -> list[RouteFamily]:
    """The route families the agent's HTTP gateway serves: the model gateway (/v1/) and the
    MCP gateway (/mcp) mount theirs here."""
    return []


def _discovery(config: SidecarConfig, rt: Runtime) -> Discovery:
    if config.discovery != "consul" or config.consul is None:
        return RegistryDiscovery(rt.catalog)
    policy = rt.policy

    def health() -> tuple[str, str]:  # the same readiness as the gRPC health service
        revision = policy.status.active_revision
        if policy.active is not None:
            return "passing", f"policy bundle revision {revision} active"
        if config.allow_without_policy:
            return "passing", "no policy bundle active; --allow-without-policy lets calls through"
        return "warning", "no policy bundle active yet: every call would be denied"

    return ConsulDiscovery(
        config.consul,
        routing_catalog=rt.catalog,
        local=rt.local,
        health=health,
        trust_domain=config.trust_domain,
        check_ttl_s=config.consul_check_ttl_s,
        deregister_critical_after_s=config.consul_deregister_critical_after_s,
        wait_s=config.consul_wait_s,
        rng=rt.rng,
        clock=rt.clock,
    )


def _open_spool(config: SidecarConfig, spiffe_id: str) -> ReceiptSpool | None:
    if not config.receipts:
        log.warning("--receipts false: calls through this sidecar leave NO receipts (for measuring their cost only)")
        return None
    try:
        return ReceiptSpool.open(
            config.data_dir, instance_id=config.instance_id, spiffe_id=spiffe_id, sync=config.receipt_sync
        )
    except SpoolError as exc:
        raise StartError(str(exc)) from exc


def _live_breaker_states(rt: Runtime) -> dict[str, str]:
    """Breaker states of the instances in the catalog now: instance ids change at every restart
    (by default), and a departed instance's breaker would otherwise stay a series for ever."""
    live = {instance.instance_id for instance in rt.catalog.instances()}
    return {instance_id: state for instance_id, state in rt.breakers.states().items() if instance_id in live}


async def _controls_first(controls: Controls, wait_s: float) -> None:
    try:
        await asyncio.wait_for(controls.from_registry.wait(), wait_s)
    except TimeoutError:
        log.warning(
            "the registry sent no kill switches within %.1f s; serving with %s until it does",
            wait_s,
            f"those persisted at the last stop (revision {controls.revision})" if controls.synced else "none",
        )


async def _report_bundle_status(registry: RegistryLink, instance_id: str, status: BundleStatus) -> None:
    try:
        await registry.stub().ReportBundleStatus(
            registry_pb2.BundleStatusReport(
                instance_id=instance_id,
                active_revision=status.active_revision,
                active_digest=status.active_digest,
                refused_revision=status.refused_revision,
                refusal=status.refusal,
            ),
            timeout=5.0,
        )
    except grpc.aio.AioRpcError as err:
        # A pure caller is known to the registry once its first receipts arrive; until then
        # its reports are refused as not yet its own (registry.reporter_ownership): expected.
        quiet = err.code() == grpc.StatusCode.FAILED_PRECONDITION
        log.log(logging.DEBUG if quiet else logging.WARNING, "could not report the bundle status: %s", err.details())


def _warn_about_policy(config: SidecarConfig, holder: PolicyHolder, keys: Mapping[str, object]) -> None:
    if not keys:
        log.warning("no trusted bundle keys (--bundle-keys): every policy bundle will be refused")
    if config.allow_without_policy:
        log.warning(
            "DEVELOPMENT MODE: --allow-without-policy lets every call through while no policy bundle is "
            "active. Never run this in production."
        )
    elif holder.active is None:
        log.warning("no policy bundle active yet: every call is denied until one arrives (default deny)")


def read_api_token(config: SidecarConfig) -> bytes | None:
    if config.api_token_file is None:
        return None
    try:
        return read_token(config.api_token_file)
    except TokenError as exc:
        raise StartError(str(exc)) from exc


def _warn_about_local_api(config: SidecarConfig, listen: str, has_token: bool) -> None:
    if isinstance(config.listen, UnixSocket):
        log.info("local API on %s (mode 0600)%s", listen, " with an API token" if has_token else "")
    elif not config.listen.is_loopback:
        log.warning(
            "local API on %s is reachable beyond loopback: any host that reaches it speaks as %s%s",
            listen,
            config.agent,
            "" if has_token else ", and it has NO API token",
        )
    elif not has_token:
        log.warning(
            "local API on %s is loopback TCP without an API token: any local process can speak as %s. "
            "Fine for development; in production use --listen unix:PATH and --api-token-file",
            listen,
            config.agent,
        )
