"""Build a sidecar from its configuration and run it until SIGTERM or SIGINT (or `stop`).

Start-up is a list of steps on one `contextlib.AsyncExitStack`: each step that starts
something registers how to stop it, so a failure at any step stops, in reverse order,
exactly what had started (no admin port, gRPC port or task is left behind), and a normal
stop runs the same list: withdraw from the catalog, stop the loops, the gateway, the admin
port, drain calls on both gRPC servers, ship the last receipts, close the rest.

What runs: two gRPC servers (sidecar.grpc_servers), the admin HTTP port, the agent's HTTP
gateway, and supervised background loops (sidecar.background). The stages share one
Runtime (sidecar.runtime_setup).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from meshwarden import connection_liveness
from meshwarden.addresses import HostPort, parse_listen
from meshwarden.admin_http import AdminBindError, AdminServer
from meshwarden.clock import SystemClock
from meshwarden.errors import MeshError
from meshwarden.ready import announce_ready
from meshwarden.registry_replicas import NoReplicaReachable, Skipped, first_reachable
from meshwarden.sidecar import budget_watch, grpc_servers, pipeline, registry_change, svids
from meshwarden.sidecar.agent_app import AgentApp
from meshwarden.sidecar.agent_watch import AgentWatch, WatchSettings
from meshwarden.sidecar.approval_desk import ApprovalDesk
from meshwarden.sidecar.background import Links, Shipping, report_bundle_status, start_loops
from meshwarden.sidecar.budget_ledger import BudgetLedger
from meshwarden.sidecar.bundle_loader import BundleLoader, BundleStatus, KeysError, load_trusted_keys
from meshwarden.sidecar.config import SidecarConfig
from meshwarden.sidecar.controls import Controls
from meshwarden.sidecar.controls_ack import Acknowledger
from meshwarden.sidecar.data_dir_lock import DataDirInUse
from meshwarden.sidecar.data_dir_lock import acquire as acquire_data_dir
from meshwarden.sidecar.discovery.source import Discovery, RegistryDiscovery
from meshwarden.sidecar.edges import mcp_http
from meshwarden.sidecar.edges.gateway_http import GatewayBindError, GatewayServer, RouteFamily
from meshwarden.sidecar.edges.model_http import ModelGateway
from meshwarden.sidecar.grpc_servers import GrpcServers
from meshwarden.sidecar.health_reporter import HealthReporter
from meshwarden.sidecar.inspection import Inspection, config_view, status_view
from meshwarden.sidecar.instance_identity import FILE_NAME as INSTANCE_ID_FILE
from meshwarden.sidecar.instance_identity import stable_instance_id
from meshwarden.sidecar.lease import Lease
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.sidecar.local_api import LocalApi
from meshwarden.sidecar.outcome_reporter import OutcomeReporter
from meshwarden.sidecar.peer_api import PeerApi
from meshwarden.sidecar.registry_ca_watch import RegistryCaWatch
from meshwarden.sidecar.registry_link import RegistryLink
from meshwarden.sidecar.runtime import Runtime
from meshwarden.sidecar.runtime_setup import (
    build_runtime,
    not_ready_because,
    open_spool,
    read_api_token,
    warn_about_local_api,
    warn_about_policy,
)
from meshwarden.sidecar.start_errors import BackgroundFailure, StartError
from meshwarden.sidecar.task_relay import TaskRelay
from meshwarden.sidecar.task_submission_policy import SubmissionPolicy
from meshwarden.stop_signals import stop_on_signals
from meshwarden.tasks import Supervisor
from meshwarden.v1 import peer_pb2_grpc, sidecar_pb2, sidecar_pb2_grpc

log = logging.getLogger(__name__)

__all__ = ["BackgroundFailure", "Ready", "StartError", "serve"]

# How long a starting sidecar waits for the registry's kill switches before it serves anyway
# (with those persisted at its last stop, if any): bounded, so a registry outage cannot keep
# a sidecar from starting.
CONTROLS_FIRST_WAIT_S = 2.0


@dataclass(frozen=True)
class Ready:
    """What the ready line says: where the sidecar serves, and as whom."""

    listen: str
    peer: str
    peer_bound: str
    instance_id: str
    agent: str
    spiffe_id: str
    workload_api: str
    discovery: str
    admin: str
    gateway: str


OnReady = Callable[[Ready], None]


def announce(ready: Ready) -> None:
    announce_ready("sidecar", **dataclasses.asdict(ready))


async def serve(config: SidecarConfig, *, stop: asyncio.Event | None = None, on_ready: OnReady = announce) -> None:
    """Runs until SIGTERM/SIGINT (or until `stop` is set). StartError when it cannot start,
    BackgroundFailure when a loop it cannot run without failed. When the registry's CA changes
    while it runs (sidecar.registry_ca_watch), it stops and starts again in place, on the same
    local API address so that its agent finds it again, and start-up enrols with the new CA."""
    stop = stop if stop is not None else stop_on_signals()
    carried: sidecar_pb2.RegisterAgentRequest | None = None
    while True:
        async with contextlib.AsyncExitStack() as stack:
            running = await _start(config, stack, on_ready, carried)
            ending = [
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(running.supervisor.fatal.wait()),
                asyncio.ensure_future(running.registry_moved.wait()),
            ]
            try:
                await asyncio.wait(ending, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in ending:
                    waiter.cancel()
                await asyncio.gather(*ending, return_exceptions=True)
            moved = running.registry_moved.is_set() and not stop.is_set() and not running.supervisor.fatal.is_set()
            log.info("stopping: deregistering and draining calls%s", " (to enrol again)" if moved else "")
            if running.supervisor.fatal.is_set():
                raise BackgroundFailure("a background task the sidecar cannot run without failed (see the log above)")
        if not moved:
            break
        config = dataclasses.replace(config, listen=parse_listen(running.listen))
        carried = running.local_api.registered  # the agent registered once; it need not notice
        log.warning("starting again in place: learning the registry's new CA and enrolling again")
    log.info("stopped")


@dataclass(frozen=True)
class _Running:
    supervisor: Supervisor
    registry_moved: asyncio.Event  # its CA changed while this ran: start again to enrol
    listen: str  # the local API as bound
    local_api: LocalApi


async def _with_reachable_replica(config: SidecarConfig) -> SidecarConfig:
    """`config` using the first of --registry's replicas that answers (each one passed over
    is logged); with every replica down, the first, whose own attempts then say why."""

    def skipped(miss: Skipped, next_address: HostPort | None) -> None:
        if next_address is not None:
            log.warning("registry replica %s unreachable (%s); using %s", miss.address, miss.reason, next_address)

    try:
        chosen = await asyncio.to_thread(first_reachable, config.registry_replicas or (config.registry,), skipped)
    except NoReplicaReachable:
        return config
    return dataclasses.replace(config, registry=chosen)


async def _start(
    config: SidecarConfig,
    stack: contextlib.AsyncExitStack,
    on_ready: OnReady,
    carried: sidecar_pb2.RegisterAgentRequest | None = None,
) -> _Running:
    """Every step of start-up, in order; each registers on `stack` how to undo it. `carried`:
    the agent's registration with this sidecar before it started again in place."""
    clock = SystemClock()
    try:  # first: nothing in the directory is touched before this sidecar holds it
        stack.callback(acquire_data_dir(config.data_dir, config.agent).close)
    except DataDirInUse as exc:
        raise StartError(str(exc)) from exc
    config = await _with_reachable_replica(config)
    learned = not config.spiffe_endpoint_socket and config.trust_bundle is None  # identity from --registry
    if learned:
        replicas = config.registry_replicas or (config.registry,)
        changed = await asyncio.to_thread(
            registry_change.forget_if_changed, config.data_dir / "identity", replicas, config.registry
        )
        if changed:  # a new registry holds no chain of the old instance: start a new one
            (config.data_dir / INSTANCE_ID_FILE).unlink(missing_ok=True)
    if not config.instance_id:  # kept across restarts: a kill switch on this instance must hold
        config = dataclasses.replace(config, instance_id=stable_instance_id(config.data_dir, config.agent))
    try:
        supply = await svids.obtain(config, clock)
    except svids.IdentityError as exc:
        raise StartError(f"no identity for agent {config.agent}: {exc}") from exc
    stack.push_async_callback(supply.close)
    current_svid = supply.svids.current
    token = read_api_token(config)
    options = [
        ("grpc.max_receive_message_length", config.grpc_message_limit_bytes),
        ("grpc.max_send_message_length", config.grpc_message_limit_bytes),
    ]
    liveness = connection_liveness.channel_options(config.keepalive_s, config.connect_timeout_s)
    # The call path's channels (to peers, to the agent) without gRPC's own retry layer: the
    # retries stage decides what is sent again, and the layer's per-call state and message
    # buffering cost each sidecar 7-9 % of its CPU per call (benchmarks/README.md, "Cheaper calls").
    call_path = [*options, ("grpc.enable_retries", 0)]
    registry = RegistryLink(supply.registry_mtls, config.trust_domain, current_svid, liveness)
    stack.push_async_callback(registry.close)
    try:
        trusted_keys = load_trusted_keys(config.bundle_keys)
    except KeysError as exc:
        raise StartError(str(exc)) from exc

    spiffe_id = current_svid().spiffe_id
    # Its peer address is known once the peer port is bound, below.
    local = LocalAgent(config.agent, config.instance_id, "", spiffe_id=spiffe_id)
    agent_app = AgentApp(str(config.app), call_path)
    stack.push_async_callback(agent_app.close)
    spool = open_spool(config, spiffe_id)
    if spool is not None:
        stack.callback(spool.close)
    rt = build_runtime(
        config,
        clock,
        local,
        current_svid,
        agent_app,
        spool,
        [*call_path, *liveness],
        approvals=ApprovalDesk(registry.approvals_stub),
        budgets=BudgetLedger(clock, budget_watch.RegistrySlices(registry.budgets), config.instance_id),
    )
    stack.push_async_callback(rt.peer_channels.close)
    stack.push_async_callback(rt.controls.flush)
    if rt.tracing is not None:
        stack.callback(rt.tracing.shutdown)  # flushes queued spans, for 3 s at most
    shipping = Shipping(spool, registry, rt, current_svid) if spool is not None else None
    if shipping is not None:
        stack.push_async_callback(shipping.last_round)  # once both servers have drained their calls
    discovery = _discovery(config, rt)
    stack.push_async_callback(discovery.close)
    # Kill switches and isolations last known, enforced before any port serves a call.
    rt.controls.on_isolation(rt.catalog.isolate)
    rt.controls.load_last()
    acknowledger = Acknowledger(registry.controls, config.instance_id)
    stack.push_async_callback(acknowledger.close)

    readiness: list[GrpcServers] = []  # the servers, once bound

    async def report(status: BundleStatus) -> None:
        await _set_ready(readiness, rt, watch)
        await report_bundle_status(registry, local.instance_id, status)

    loader = BundleLoader(
        rt.policy,
        agent=config.agent,
        capabilities=local.capability_names,
        trusted_keys=trusted_keys,
        data_dir=config.data_dir,
        report=report,
    )
    await loader.load_last_good()
    # What start-up made lives as long as the process: out of the cyclic GC's sight, so that a
    # full collection while a bundle builds (its allocations trigger one) scans only what was
    # made since, tens of ms less of a stalled loop (benchmarks/README.md, bundle pushes).
    gc.freeze()
    lease = Lease(registry.stub, local)
    watch = AgentWatch(agent_app, local, lease.withdraw, lambda: _set_ready(readiness, rt, watch), WatchSettings())
    health = HealthReporter(registry.stub, local.instance_id, rt.catalog, rt.breakers, rt.latency, clock, rt.own_health)

    seen = Inspection(rt, local, tuple(sorted(trusted_keys)), shipping.backlog if shipping is not None else None)
    views = {"/config": lambda: config_view(config), "/status": lambda: status_view(seen)}
    admin = AdminServer("sidecar", rt.metrics.registry, lambda: watch.gone_because or not_ready_because(rt), views)
    try:
        admin_address = await admin.serve(config.admin_listen)
    except AdminBindError as exc:
        raise StartError(str(exc)) from exc
    stack.push_async_callback(admin.stop)
    gateway = GatewayServer(_gateway_families(rt), token, config.max_payload_bytes)
    try:
        gateway_address = await gateway.start(config.gateway_listen) if config.gateway_listen else "off"
    except GatewayBindError as exc:
        raise StartError(str(exc)) from exc
    stack.push_async_callback(gateway.stop)
    servers = await grpc_servers.bind(config, token, current_svid, options)
    stack.push_async_callback(servers.stop)  # closes the ports if start-up fails from here on
    local.peer_address = servers.peer_address  # what the catalog tells other sidecars to dial
    readiness.append(servers)
    local_api = _add_servicers(servers, rt, lease, loader, report, registry, health, shipping)

    # Once the loops stopped (after this) and every call ended: report what slices spent, return the rest.
    stack.push_async_callback(rt.budgets.return_all)
    supervisor = Supervisor()
    stack.push_async_callback(supervisor.stop)
    start_loops(supervisor, Links(rt, registry, lease, health, discovery, loader, acknowledger))
    ca_watch = RegistryCaWatch(config.registry, config.data_dir / "identity", registry.connected)
    if learned:  # a SPIRE agent or a --trust-bundle file is the operator's to change
        supervisor.start("registry-ca-watch", ca_watch.run)
    if shipping is not None:
        shipping.start(supervisor)
    supervisor.start("agent-watch", watch.run)
    # The registry's kill switches before the first call: the watch stream sends them first.
    await _controls_first(rt.controls, CONTROLS_FIRST_WAIT_S)
    await _budgets_first(rt.budgets, CONTROLS_FIRST_WAIT_S)  # the budget set too
    stack.push_async_callback(servers.stop)  # drain calls before the loops and the spool stop
    stack.push_async_callback(_withdraw, servers, lease, discovery)  # the first thing a stop does
    await servers.start()
    if carried is not None:
        try:
            await local_api.replay(carried)
        except MeshError as exc:
            log.warning("the agent's earlier registration no longer passes (%s); it must register again", exc)
    await _set_ready(readiness, rt, watch)
    warn_about_policy(config, rt.policy, trusted_keys)
    warn_about_local_api(config, servers.listen, token is not None)
    if config.consul is not None:
        log.info("discovery through Consul at %s (registry catalog kept as the operator view)", config.consul.base_url)
    log.info(
        "sidecar for agent %s as %s (instance %s): local API %s, peer %s (mTLS), agent app %s, registry %s",
        config.agent,
        spiffe_id,
        config.instance_id,
        servers.listen,
        servers.peer_address,
        config.app,
        config.registry,
    )
    on_ready(
        Ready(
            listen=servers.listen,
            peer=servers.peer_address,
            peer_bound=servers.peer_bound,
            instance_id=config.instance_id,
            agent=config.agent,
            spiffe_id=spiffe_id,
            workload_api=supply.workload_socket,
            discovery=config.discovery,
            admin=str(admin_address) if admin_address else "off",
            gateway=gateway_address,
        )
    )
    return _Running(supervisor, ca_watch.moved, servers.listen, local_api)


def _add_servicers(
    servers: GrpcServers,
    rt: Runtime,
    lease: Lease,
    loader: BundleLoader,
    report: Callable[[BundleStatus], Awaitable[None]],
    registry: RegistryLink,
    health: HealthReporter,
    shipping: Shipping | None,
) -> LocalApi:
    async def on_registered() -> None:  # the inbound policy slice follows what the agent serves
        await loader.rebuild_for_capabilities()
        await report(rt.policy.status)

    outcomes = OutcomeReporter(registry, shipping.ship_now if shipping is not None else None)
    local_api = LocalApi(
        rt.config,
        pipeline.outbound(rt),
        rt,
        lease,
        on_registered,
        outcomes,
        health=health.current,
        tasks=TaskRelay(
            registry,
            lambda: rt.local.instance_id,
            rt.fences.learn,
            SubmissionPolicy(rt.policy, rt.local, rt.clock, rt.config.allow_without_policy).check,
        ),
    )
    sidecar_pb2_grpc.add_SidecarServicer_to_server(local_api, servers.local)
    peer_pb2_grpc.add_PeerServicer_to_server(PeerApi(rt.config, pipeline.inbound(rt), rt.clock), servers.peer)
    return local_api


async def _set_ready(readiness: list[GrpcServers], rt: Runtime, watch: AgentWatch) -> None:
    """Ready unless the agent stopped answering (sidecar.agent_watch) or no policy is active."""
    for servers in readiness:
        await servers.set_ready(not (watch.gone_because or not_ready_because(rt)))


async def _withdraw(servers: GrpcServers, lease: Lease, discovery: Discovery) -> None:
    """Not ready, out of the catalog: callers stop choosing this instance before it drains."""
    lease.close()  # an agent registering again now would re-enter discovery after the withdrawal
    await servers.set_ready(False)
    await asyncio.gather(lease.deregister(), discovery.withdraw())


def _gateway_families(rt: Runtime) -> list[RouteFamily]:
    """The route families the agent's HTTP gateway serves: the model gateway (/v1/) and the
    MCP gateway (/mcp) mount theirs here."""
    models = ModelGateway(pipeline.model(rt), rt.policy, rt.local, rt.clock.monotonic, rt.config.model_timeout_s)
    families = models.families()
    return [
        *families[:-1],
        dataclasses.replace(families[-1], on_stop=(rt.upstream.close,)),
        mcp_http.family(rt, pipeline.tool(rt)),  # /mcp: the MCP servers the bundle declares
    ]


def _discovery(config: SidecarConfig, rt: Runtime) -> Discovery:
    if config.discovery != "consul" or config.consul is None:
        return RegistryDiscovery(rt.catalog)
    try:  # py-consul comes with the consul extra, which a sidecar without Consul does without
        from meshwarden.sidecar.discovery.consul_discovery import ConsulDiscovery
    except ModuleNotFoundError as exc:
        raise StartError(
            f"--discovery consul needs py-consul (module {exc.name} is not installed): pip install 'meshwarden[consul]'"
        ) from exc
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


async def _budgets_first(ledger: BudgetLedger, wait_s: float) -> None:
    """The budget set before the first call, as for kill switches (bounded by `wait_s`)."""
    try:
        await asyncio.wait_for(ledger.known.wait(), wait_s)
    except TimeoutError:
        log.warning("the registry sent no budgets within %.1f s; calls draw on none until it does", wait_s)


async def _controls_first(controls: Controls, wait_s: float) -> None:
    try:
        await asyncio.wait_for(controls.from_registry.wait(), wait_s)
    except TimeoutError:
        log.warning(
            "the registry sent no kill switches within %.1f s; serving with %s until it does",
            wait_s,
            f"those persisted at the last stop (revision {controls.revision})" if controls.synced else "none",
        )
