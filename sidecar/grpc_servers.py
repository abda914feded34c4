"""The sidecar's two gRPC servers: the local API for its agent (meshwarden.v1.Sidecar) and the
peer endpoint for other sidecars (meshwarden.v1.Peer, mTLS only), both with health and
reflection. Bound late in start-up (a port in use fails it), started last, stopped with a grace
period so calls in flight end.

grpcio keeps a bound port open until its server has been started and stopped (stopping a
server that never started leaves the socket listening), so stopping one that never started
starts it first, with no grace: nothing can be in flight on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health

from meshwarden import connection_liveness
from meshwarden.addresses import ListenAddress, UnixSocket
from meshwarden.identity.credentials import server_credentials
from meshwarden.identity.svid import Svid
from meshwarden.sidecar.config import SidecarConfig
from meshwarden.sidecar.local_auth import RequireToken
from meshwarden.sidecar.start_errors import StartError
from meshwarden.standard_services import add_standard_services, set_serving
from meshwarden.v1 import peer_pb2, sidecar_pb2

LOCAL_SERVICE = sidecar_pb2.DESCRIPTOR.services_by_name["Sidecar"].full_name
PEER_SERVICE = peer_pb2.DESCRIPTOR.services_by_name["Peer"].full_name
STOP_GRACE_S = 2.0


@dataclass
class GrpcServers:
    local: grpc.aio.Server
    peer: grpc.aio.Server
    local_health: health.aio.HealthServicer
    peer_health: health.aio.HealthServicer
    listen: str  # the local API as bound (unix:PATH or HOST:PORT)
    peer_bound: str  # HOST:PORT the peer endpoint is bound to
    peer_address: str  # what the catalog tells other sidecars to dial
    started: bool = False

    async def start(self) -> None:
        self.started = True
        await self.local.start()
        await self.peer.start()

    async def set_ready(self, ready: bool) -> None:
        await set_serving(self.local_health, [LOCAL_SERVICE], ready)
        await set_serving(self.peer_health, [PEER_SERVICE], ready)

    async def stop(self, grace_s: float | None = STOP_GRACE_S) -> None:
        """Stops both (a bound server that never started too: that closes its ports)."""
        if not self.started:
            await self.start()
            grace_s = None
        await _stop_both(self.local, self.peer, grace_s)


async def bind(
    config: SidecarConfig, token: bytes | None, current_svid: Callable[[], Svid], options: list[tuple[str, Any]]
) -> GrpcServers:
    """Both servers, bound; StartError when a port cannot be (both are stopped first)."""
    # so_reuseport=0: a second sidecar on the same port must fail to bind, not share it.
    server_options = [*options, ("grpc.so_reuseport", 0)]
    interceptors = [RequireToken(token)] if token else []
    local = grpc.aio.server(options=server_options, interceptors=interceptors)
    peer = grpc.aio.server(options=[*server_options, *connection_liveness.SERVER_OPTIONS])
    local_health = add_standard_services(local, [LOCAL_SERVICE])
    peer_health = add_standard_services(peer, [PEER_SERVICE])
    try:
        listen = _bind_local(local, config.listen)
        # mTLS only: a peer must present an SVID of this trust domain; no plaintext peer port exists.
        credentials = server_credentials(current_svid, require_client_auth=True)
        peer_port = _bind(peer, str(config.peer_listen), "peer endpoint", credentials)
    except StartError:
        await local.start()
        await peer.start()
        await _stop_both(local, peer, None)
        raise
    peer_bound = f"{config.peer_listen.host}:{peer_port}"
    return GrpcServers(local, peer, local_health, peer_health, listen, peer_bound, config.peer_advertise or peer_bound)


async def _stop_both(local: grpc.aio.Server, peer: grpc.aio.Server, grace_s: float | None) -> None:
    await local.stop(grace_s)
    await peer.stop(grace_s)


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
