"""Runs the registry: opens the store, serves gRPC, reaps leases, shuts down cleanly.

Start order matters: the store is opened and persisted leases are extended (registry.leases)
before the port is bound; health turns SERVING only once the server and the reaper run; the
ready line (meshwarden.ready) is printed last, naming the port actually bound (port 0 allowed).
On SIGTERM or SIGINT: health NOT_SERVING, watchers told to reconnect, in-flight calls given a
short grace, reaper stopped, database closed, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Any, Final

import grpc

from meshwarden.addresses import HostPort
from meshwarden.clock import Clock, SystemClock
from meshwarden.ready import announce_ready
from meshwarden.standard_services import add_standard_services, set_serving
from meshwarden.v1 import registry_pb2_grpc
from registry import leases
from registry.catalog import Catalog
from registry.config import RegistryConfig
from registry.errors import RegistryError
from registry.server import SERVICE_NAME, RegistryService
from registry.store import Store
from registry.watch_hub import WatchHub

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S: Final = 2.0

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


OnReady = Callable[[HostPort], None]


def announce(address: HostPort) -> None:
    announce_ready("registry", listen=str(address))


async def serve(config: RegistryConfig, clock: Clock, *, stop: asyncio.Event, on_ready: OnReady = announce) -> None:
    """Serves until `stop` is set. Raises StoreError or StartError when it cannot start."""
    store = Store.open(config.data_dir, event_log_retention=config.event_log_retention)
    try:
        hub = WatchHub(config.watch_queue_events)
        catalog = Catalog(store, clock, lease_ttl_s=config.lease_ttl_s, publish=hub.publish)
        leases.forgive_downtime(catalog)
        await _serve_catalog(config, catalog, hub, stop, on_ready)
    finally:
        store.close()
        log.info("closed %s", store.path)


async def _serve_catalog(
    config: RegistryConfig, catalog: Catalog, hub: WatchHub, stop: asyncio.Event, on_ready: OnReady
) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    service = RegistryService(catalog, hub, heartbeat_interval_s=config.heartbeat_interval_s)
    registry_pb2_grpc.add_RegistryServicer_to_server(service, server)
    health = add_standard_services(server, [SERVICE_NAME])
    try:
        port = server.add_insecure_port(str(config.listen))
    except RuntimeError as exc:
        raise StartError(f"cannot listen on {config.listen}: the port is in use or the host unknown") from exc
    address = HostPort(config.listen.host, port)
    await server.start()
    reaper = asyncio.create_task(leases.reap_expired_leases(catalog, config.heartbeat_interval_s))
    try:
        await set_serving(health, [SERVICE_NAME], True)
        log.info(
            "registry serving on %s at revision %d (heartbeat %.3g s, lease %.3g s)",
            address, catalog.revision, config.heartbeat_interval_s, config.lease_ttl_s,
        )
        on_ready(address)
        await stop.wait()
        log.info("shutting down: %d watcher(s) told to reconnect", hub.watcher_count)
        await set_serving(health, [SERVICE_NAME], False)
        hub.close()
    finally:
        await server.stop(SHUTDOWN_GRACE_S)
        reaper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reaper


def run(config: RegistryConfig, clock: Clock | None = None) -> None:
    """Runs the registry in this process until SIGTERM or SIGINT."""
    asyncio.run(_run(config, clock or SystemClock()))


async def _run(config: RegistryConfig, clock: Clock) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(config, clock, stop=stop)
    log.info("registry stopped")
