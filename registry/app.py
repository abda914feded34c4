"""Runs the registry: opens the store and the embedded CA, serves gRPC on two TLS ports,
reaps leases, rotates its own SVID, shuts down cleanly.

Two ports, because gRPC Python can either require a client certificate or not ask for one
(there is no "ask, but accept none"; checked with grpcio 1.85):
- `listen`: TLS without client certificates. Enrolment, the trust bundle, operators (their
  token), health and reflection. Every service is served, but a call that needs an SVID is
  refused (UNAUTHENTICATED, naming the mTLS port).
- `mtls_listen`: mutual TLS; the client's certificate must chain to the trust bundle, and the
  SPIFFE ID in it is who the caller is. Sidecars register, renew, watch and renew SVIDs here.
Neither port speaks plaintext.

Start order matters: the store is opened (and its data dir locked) before the CA is opened or
made, so two registries never race to make one; persisted leases are extended
(registry.leases) before the ports are bound; health turns SERVING only once the server, the
reaper and the SVID rotation run; the ready line (meshwarden.ready) is printed last, naming the
ports actually bound (port 0 allowed), the trust domain and the CA fingerprint.
On SIGTERM or SIGINT: health NOT_SERVING, watchers told to reconnect, in-flight calls given a
short grace, background tasks stopped, database closed, exit 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from meshwarden import tasks
from meshwarden.addresses import HostPort
from meshwarden.admin_http import AdminBindError, AdminServer
from meshwarden.clock import Clock, SystemClock
from meshwarden.identity.credentials import server_credentials
from meshwarden.policy_bundle.errors import BundleError
from meshwarden.policy_bundle.trusted_keys import load_trusted_keys
from meshwarden.ready import announce_ready
from meshwarden.registry import api, leases, singletons, task_key
from meshwarden.registry.agent_activity import AgentActivities
from meshwarden.registry.approvals import Approvals
from meshwarden.registry.audit import Audit
from meshwarden.registry.authz import Authorizer
from meshwarden.registry.budgets import Budgets, BudgetSettings
from meshwarden.registry.bundles import Bundles
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.change_queries import ChangeQueries
from meshwarden.registry.config import RegistryConfig
from meshwarden.registry.console import ConsoleBindError, ConsoleServer, Sources
from meshwarden.registry.control_acks import Acknowledgements
from meshwarden.registry.controls import Controls
from meshwarden.registry.errors import RegistryError
from meshwarden.registry.health_reports import HealthReports
from meshwarden.registry.issuer import CA_CERT_FILE, CA_DIR_NAME, CA_KEY_FILE, Issuer
from meshwarden.registry.join_tokens import JoinTokens
from meshwarden.registry.metrics import registry_metrics
from meshwarden.registry.operators import OPERATOR_TOKEN_FILE, OperatorCredential
from meshwarden.registry.outcomes import Outcomes
from meshwarden.registry.own_svid import CurrentSvid, EmbeddedRegistrySvid
from meshwarden.registry.receipts import Receipts
from meshwarden.registry.replicas import Follower
from meshwarden.registry.routes import Routes
from meshwarden.registry.session_queries import SessionQueries
from meshwarden.registry.session_suspects import SessionSuspects
from meshwarden.registry.store import SessionSignalStore, Stores
from meshwarden.registry.store.sqlite import stores_over
from meshwarden.registry.store.sqlite.database import Database
from meshwarden.registry.task_queue import TaskQueue
from meshwarden.registry.watch_hub import WatchHub
from meshwarden.standard_services import add_standard_services, set_serving
from meshwarden.stop_signals import stop_on_signals

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S: Final = 2.0
# How long a worker thread (the store's, a large answer's encoding) may hold the interpreter
# while the event loop waits for it (Python's default: 5 ms). Measured with 1,500 instances
# on 2 busy cores: the loop's longest stall during listings fell from 118 ms to 11 ms.
GIL_SWITCH_INTERVAL_S: Final = 0.001
WILDCARD_HOSTS: Final = frozenset({"0.0.0.0", "::", ""})

# so_reuseport=0: a second registry on the same port must fail to bind, not share the
# traffic with the first. Keepalive pings every 20 s are accepted so that watch clients can
# detect a dead connection on an otherwise idle stream.
SERVER_OPTIONS: Final[list[tuple[str, Any]]] = [
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 20_000),
    ("grpc.http2.max_ping_strikes", 0),
]


class StartError(RegistryError):
    """The registry could not start (port in use, unresolvable host); says which and why."""


@dataclass(frozen=True)
class Ready:
    """What the registry tells its supervisor once it serves (all of it public)."""

    listen: HostPort  # TLS, no client certificate: enrolment, trust bundle, operators, health
    mtls: HostPort  # mutual TLS: SVID holders
    trust_domain: str
    ca_fingerprint: str  # "sha256:<hex>": what --ca-pin and join tokens carry
    bundle_pem: bytes
    admin: HostPort | None = None  # the admin HTTP port (metrics, health), when on
    console: HostPort | None = None  # the web console, when on


OnReady = Callable[[Ready], None]


def announce(ready: Ready) -> None:
    announce_ready(
        "registry",
        listen=str(ready.listen),
        mtls=str(ready.mtls),
        trust_domain=ready.trust_domain,
        ca_fingerprint=ready.ca_fingerprint,
        admin=str(ready.admin) if ready.admin is not None else "off",
        console=str(ready.console) if ready.console is not None else "off",
    )


async def serve(config: RegistryConfig, clock: Clock, *, stop: asyncio.Event, on_ready: OnReady = announce) -> None:
    """Serves until `stop` is set. Raises StoreError, CaError or StartError when it cannot start."""
    # SQLite in the data dir: the whole store; with --store postgresql:// it is opened only for
    # the data dir (created 0700) and its lock, which keeps two replicas off one data dir.
    db = await asyncio.to_thread(Database.open, config.data_dir)
    try:
        stores = await _open_stores(config, db)
    except BaseException:
        await asyncio.to_thread(db.close)
        raise
    try:
        if stores.shared_files is not None:
            await stores.shared_files.sync(config.data_dir, SHARED_FILES, lambda: _make_shared_files(config, clock))
        issuer = Issuer.open(config.data_dir / CA_DIR_NAME, config.trust_domain, clock)
        operators = OperatorCredential.load_or_create(config.data_dir)
        # The seam for SPIRE: with a Workload API source (meshwarden/identity/workload_source.py)
        # `current_svid` would come from it instead; the embedded issuer still serves Identity.
        own_svid = EmbeddedRegistrySvid(issuer, config.svid_ttl_s, clock)
        hub = WatchHub(config.watch_queue_events, coalesce_s=config.watch_coalesce_s)
        catalog = Catalog(
            stores.catalog,
            stores.leases,
            clock,
            lease_ttl_s=config.lease_ttl_s,
            publish=hub.publish,
            resync=hub.disconnect_all,
        )
        await catalog.load()
        if stores.leadership is None:
            await leases.forgive_downtime(catalog)  # with replicas: whoever takes the lead does it
        audit = Audit(stores.audit, clock)
        bundles = Bundles(stores.bundles, clock, audit, hub.publish, trusted_keys=_bundle_keys(config))
        await bundles.load()
        receipts = Receipts(stores.receipts, clock, trust_bundle_pem=issuer.bundle_pem)
        outcomes = Outcomes(stores.outcomes, clock)
        task_queue = TaskQueue(stores.tasks, clock)
        if stores.leadership is None:
            await task_queue.forgive_downtime()  # with replicas: whoever takes the lead does it
        controls = Controls(stores.controls, clock, audit, hub.publish)
        await controls.load()
        routes = Routes(stores.routes, clock, audit, hub.publish)
        await routes.load()
        health = HealthReports(clock, store=stores.health_reports)
        approvals = Approvals(stores.approvals, clock, audit)
        budgets = Budgets(
            stores.budgets,
            clock,
            audit,
            BudgetSettings(slice_ttl_s=config.budget_slice_ttl_s, sync_every_s=config.budget_sync_s),
        )
        parts = _Parts(
            catalog=catalog,
            hub=hub,
            issuer=issuer,
            tokens=JoinTokens(stores.join_tokens, clock, ca_fingerprint=issuer.fingerprint),
            operators=operators,
            bundles=bundles,
            routes=routes,
            receipts=receipts,
            sessions=SessionQueries(receipts, outcomes, stores.sessions, clock),
            suspects=SessionSuspects(receipts, outcomes, stores.session_signals, clock),
            session_store=stores.session_signals,
            agent_activity=AgentActivities(stores.agent_activity),
            outcomes=outcomes,
            controls=controls,
            acks=Acknowledgements(clock, stores.control_watchers),
            audit=audit,
            clock=clock,
            health=health,
            task_queue=task_queue,
            task_key=task_key.load_or_create(config.data_dir),
            approvals=approvals,
            budgets=budgets,
            follower=None
            if stores.feed is None
            else Follower(
                stores.feed,
                clock,
                catalog=catalog,
                controls=controls,
                bundles=bundles,
                routes=routes,
                health=health,
                budgets=budgets,
                approvals=approvals,
            ),
        )
        once_in_mesh: list[singletons.Work] = [
            ("lease-reaper", lambda: leases.reap_expired_leases(parts.catalog, config.heartbeat_interval_s)),
            ("kill-switch-expiry", parts.controls.expire_forever),
            ("budget-slice-expiry", parts.budgets.reap_forever),
            ("task-lease-reaper", task_queue.reap_forever),
        ]
        if config.receipts_retention_s:
            retention = config.receipts_retention_s
            once_in_mesh.append(("receipts-retention", lambda: receipts.retain_forever(retention)))
        background = [
            tasks.supervise("registry-svid-rotation", own_svid.rotate_forever),
            tasks.supervise("suspect-sessions-count", parts.suspects.count_forever),
            tasks.supervise(
                "work-once-in-mesh",
                lambda: singletons.run_once_in_mesh(
                    once_in_mesh, stores.leadership, _on_lead(stores, catalog, task_queue)
                ),
            ),
        ]
        if parts.follower is not None:
            background.append(tasks.supervise("replica-follower", parts.follower.follow_forever))
        if stores.control_watchers is not None:
            background.append(tasks.supervise("control-watchers-sharing", parts.acks.share_forever))
        try:
            await _serve(config, parts, own_svid.current, stop, on_ready)
        finally:
            await tasks.cancel_all(background)
    finally:
        await stores.close()
        if config.store:
            await asyncio.to_thread(db.close)
        log.info("closed %s", stores.location)


# What every replica on a shared store must hold alike (registry.store.SharedFiles).
SHARED_FILES: Final = (
    f"{CA_DIR_NAME}/{CA_KEY_FILE}",
    f"{CA_DIR_NAME}/{CA_CERT_FILE}",
    OPERATOR_TOKEN_FILE,
    task_key.KEY_NAME,
)


async def _open_stores(config: RegistryConfig, db: Database) -> Stores:
    if not config.store:
        return stores_over(db, event_log_retention=config.event_log_retention)
    from meshwarden.registry.store.postgres import open_postgres  # asyncpg only when asked for

    return await open_postgres(config.store, event_log_retention=config.event_log_retention)


def _make_shared_files(config: RegistryConfig, clock: Clock) -> None:
    """Loads or creates the CA, the operator token and the task key in the data dir (the first replica)."""
    Issuer.open(config.data_dir / CA_DIR_NAME, config.trust_domain, clock)
    OperatorCredential.load_or_create(config.data_dir)
    task_key.load_or_create(config.data_dir)


def _on_lead(stores: Stores, catalog: Catalog, task_queue: TaskQueue) -> Callable[[], Awaitable[None]]:
    """What a replica does when it takes the lead: forgive the time no replica renewed leases
    (instances' and tasks')."""

    async def forgive() -> None:
        if stores.leadership is not None:
            await leases.forgive_downtime(catalog)
            await task_queue.forgive_downtime()

    return forgive


def _bundle_keys(config: RegistryConfig) -> dict[str, Ed25519PublicKey] | None:
    """The trusted bundle keys, or None when the operator explicitly allowed unverified bundles.

    Without keys the registry cannot know which revisions sidecars refuse: a bundle edited after
    signing would become the latest revision and new sidecars would get it instead of the last
    good one. Letting sidecars' refusal reports demote a revision was the other way; it was
    not taken because any agent certificate could then roll policy back to an older revision."""
    if config.bundle_keys is None:
        if not config.allow_unverified_bundles:
            raise StartError(
                "no --bundle-keys: give the registry the sidecars' trusted bundle public keys (a directory of "
                "<key-id>.pub, MESHWARDEN_REGISTRY_BUNDLE_KEYS) so that it refuses a bundle no sidecar would accept; "
                "for development only, --allow-unverified-bundles true stores pushed bundles unverified"
            )
        log.warning(
            "--allow-unverified-bundles: pushed bundles are stored without verifying their signatures, so a bundle "
            "that no sidecar accepts can become the latest revision and new sidecars get it instead of the last "
            "good one; give the registry the sidecars' public keys (--bundle-keys)"
        )
        return None
    try:
        keys = load_trusted_keys(config.bundle_keys)
    except BundleError as exc:
        raise StartError(f"--bundle-keys: {exc}") from exc
    log.info("pushed bundles are verified against key(s) %s", ", ".join(sorted(keys)))
    return keys


@dataclass(frozen=True, kw_only=True)
class _Parts:
    catalog: Catalog
    hub: WatchHub
    issuer: Issuer
    tokens: JoinTokens
    operators: OperatorCredential
    bundles: Bundles
    routes: Routes
    receipts: Receipts
    sessions: SessionQueries
    suspects: SessionSuspects
    session_store: SessionSignalStore | None  # signals and call facts per session (None: from receipts)
    agent_activity: AgentActivities
    outcomes: Outcomes
    controls: Controls
    acks: Acknowledgements
    audit: Audit
    clock: Clock
    health: HealthReports
    task_queue: TaskQueue
    task_key: Ed25519PrivateKey
    approvals: Approvals
    budgets: Budgets
    follower: Follower | None


def _controls_api(parts: _Parts) -> api.ControlsApi:
    return api.ControlsApi(parts.controls, parts.acks, parts.audit, parts.clock, parts.task_queue)


def _console(config: RegistryConfig, parts: _Parts) -> ConsoleServer | None:
    """The web console when --console-listen is on; it acts through the same Controls servicer."""
    if config.console_listen is None:
        log.info("web console off (--console-listen off)")
        return None
    sources = Sources(
        catalog=parts.catalog,
        health=parts.health,
        receipts=parts.receipts,
        sessions=parts.sessions,
        budgets=parts.budgets,
        approvals=parts.approvals,
        controls=parts.controls,
        task_queue=parts.task_queue,
        bundles=parts.bundles,
        audit=parts.audit,
        clock=parts.clock,
    )
    tls = None
    if config.console_tls_cert is not None and config.console_tls_key is not None:
        tls = (config.console_tls_cert, config.console_tls_key)
    credentials = (parts.operators, OperatorCredential.load_or_create_viewer(config.data_dir))
    return ConsoleServer(
        sources, _controls_api(parts), credentials, idle_s=config.console_session_idle_s, tls_files=tls
    )


def _add_services(server: grpc.aio.Server, config: RegistryConfig, parts: _Parts, mtls_advertised: str) -> list[str]:
    return api.add_services(
        server,
        catalog=api.CatalogApi(parts.catalog, parts.health, heartbeat_interval_s=config.heartbeat_interval_s),
        watch=api.WatchApi(parts.catalog, parts.hub, parts.bundles, parts.routes, parts.controls, parts.acks),
        bundles=api.BundlesApi(parts.bundles, parts.catalog, parts.hub, parts.receipts),
        routes=api.RoutesApi(parts.routes, parts.hub),
        health=api.HealthApi(parts.health, parts.catalog, parts.receipts),
        controls=_controls_api(parts),
        identity=api.IdentityApi(
            parts.issuer,
            parts.tokens,
            open_enrollment=config.open_enrollment_enabled,
            svid_ttl_s=config.svid_ttl_s,
            mtls_address=mtls_advertised,
            audit=parts.audit,
            clock=parts.clock,
        ),
        receipts=api.ReceiptsApi(parts.receipts, parts.sessions),
        approvals=api.ApprovalsApi(parts.approvals),
        budgets=api.BudgetsApi(parts.budgets),
        tools=api.ToolsApi(parts.receipts, parts.clock),
        bundle_history=api.BundleHistoryApi(parts.bundles),
        session_insights=api.SessionInsightsApi(
            parts.suspects,
            ChangeQueries(parts.receipts, parts.outcomes, parts.audit, parts.session_store, parts.clock),
            parts.agent_activity,
        ),
        tasks=api.TasksApi(parts.task_queue, parts.catalog, parts.task_key, parts.receipts),
    )


async def _serve(
    config: RegistryConfig, parts: _Parts, current_svid: CurrentSvid, stop: asyncio.Event, on_ready: OnReady
) -> None:
    authorization = api.Authorization()  # every RPC of ours passes it: registry.api.authorization
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=[authorization])
    listen = _bind(server, config.listen, server_credentials(current_svid, require_client_auth=False))
    mtls = _bind(server, config.mtls_address, server_credentials(current_svid, require_client_auth=True))
    mtls_advertised = config.mtls_advertise or _advertised(mtls)
    authorizer = Authorizer(
        config.trust_domain, parts.operators, mtls_address=mtls_advertised, ca_key_id=parts.issuer.key_id
    )
    authorization.use(authorizer)
    services = _add_services(server, config, parts, mtls_advertised)
    health = add_standard_services(server, services)
    serving = False
    admin = AdminServer(
        "registry",
        registry_metrics(parts.catalog, parts.hub, parts.bundles, parts.budgets, parts.suspects),
        lambda: _not_ready(serving, parts.follower),
    )
    console = _console(config, parts)
    try:
        admin_address = await admin.serve(config.admin_listen)
        console_address = await console.start(config.console_listen) if console and config.console_listen else None
    except (AdminBindError, ConsoleBindError) as exc:
        await admin.stop()
        raise StartError(str(exc)) from exc
    await server.start()
    # What start-up made lives as long as the process: out of the cyclic GC's sight, so that a
    # full collection scans only what was made since (a full collection of the registry's
    # whole heap held its loop for 30 ms of CPU), as the sidecar does (sidecar.app).
    gc.freeze()
    try:
        await set_serving(health, services, True)
        serving = True
        log.info(
            "registry serving on %s (TLS: enrolment, operators, health) and %s (mTLS: sidecars) at revision %d "
            "(heartbeat %.3g s, lease %.3g s); trust domain %s, CA %s, SVIDs for %.0f s, open enrolment %s",
            listen,
            mtls,
            parts.catalog.revision,
            config.heartbeat_interval_s,
            config.lease_ttl_s,
            config.trust_domain,
            parts.issuer.fingerprint,
            config.svid_ttl_s,
            "on (loopback only)" if config.open_enrollment_enabled else "off (sidecars need join tokens)",
        )
        on_ready(
            Ready(
                listen,
                mtls,
                config.trust_domain,
                parts.issuer.fingerprint,
                parts.issuer.bundle_pem,
                admin_address,
                console_address,
            )
        )
        await stop.wait()
        log.info("shutting down: %d watcher(s) told to reconnect", parts.hub.watcher_count)
        serving = False
        await set_serving(health, services, False)
        parts.hub.close()
    finally:
        await server.stop(SHUTDOWN_GRACE_S)
        if console is not None:
            await console.stop()
        await admin.stop()


def _not_ready(serving: bool, follower: Follower | None) -> str:
    """Why the registry is not ready ("" when it is)."""
    if not serving:
        return "the registry is starting or stopping"
    if follower is not None and not follower.reachable:
        return follower.problem
    return ""


def _bind(server: grpc.aio.Server, address: HostPort, credentials: grpc.ServerCredentials) -> HostPort:
    try:
        port = server.add_secure_port(str(address), credentials)
    except RuntimeError as exc:
        raise StartError(f"cannot listen on {address}: the port is in use or the host unknown") from exc
    return HostPort(address.host, port)


def _advertised(bound: HostPort) -> str:
    """What clients should dial for `bound`; an empty host means "the host you dialled"."""
    return f":{bound.port}" if bound.host in WILDCARD_HOSTS else str(bound)


def run(config: RegistryConfig, clock: Clock | None = None) -> None:
    """Runs the registry in this process until SIGTERM or SIGINT."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # the process is the registry's: see above
    asyncio.run(_run(config, clock or SystemClock()))


async def _run(config: RegistryConfig, clock: Clock) -> None:
    await serve(config, clock, stop=stop_on_signals())
    log.info("registry stopped")
