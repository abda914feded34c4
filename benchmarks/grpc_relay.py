"""A bare Python gRPC relay of meshwarden.v1.Agent/Handle: the floor a Python sidecar starts from.

    python benchmarks/grpc_relay.py --listen 127.0.0.1:0 --upstream 127.0.0.1:7412 [--design aio]
        [--svid-dir DIR [--mtls-listen] [--upstream-spiffe-id ID]]

It parses each Delivery, forwards it upstream on one long-lived channel with the caller's
remaining deadline and returns the Outcome: what any Python hop costs before it decides
anything. benchmarks/latency.py runs two in series (its `pyrelay` path) so that the mesh's
own cost can be told apart from the cost of two grpc.aio hops. Prints the ready line
(meshwarden.ready) and serves grpc.health.v1, like every meshwarden server.

mTLS, as the sidecars do it between each other (its `pyrelay-mtls` path), with the SVID in
`--svid-dir` (svid.pem, svid.key, bundle.pem; P-256, from any SPIFFE CA) and the credentials
of meshwarden.identity.credentials:
  --mtls-listen          serve with mTLS: a caller must present an SVID that chains to the
                         bundle, and every call reads the caller's SPIFFE ID from the
                         handshake (meshwarden.identity.peer.peer_identity) and refuses
                         any but an agent's, as a sidecar's peer endpoint does
  --upstream-spiffe-id   dial the upstream with mTLS, presenting the SVID and checking that
                         the server holds this SPIFFE ID (as a sidecar dials a peer)

How the hop is built (--design), to compare what a Python sidecar's hop could cost:
  aio          grpc.aio server and client, messages parsed and re-serialized (the sidecar today)
  aio-bytes    grpc.aio with a generic handler and a multicallable without serializers: bytes
  aio-thread-client  the grpc.aio server forwarding on a sync channel from a thread pool
               (loop.run_in_executor), as a sidecar could make its outbound calls
  sync         grpc.server on a thread pool (--workers), a sync channel called from the handler
  sync-bytes   the same relaying bytes
  sync-bridge  the sync server whose handler runs the forwarding in an asyncio loop
               (run_coroutine_threadsafe, a grpc.aio client), as a sidecar whose stages are
               coroutines would need
"""

from __future__ import annotations

import argparse
import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from meshwarden.identity.credentials import channel_credentials, expect_peer, server_credentials
from meshwarden.identity.peer import Unauthenticated, peer_identity
from meshwarden.identity.svid import Svid, svid_from_pem
from meshwarden.ready import announce_ready
from meshwarden.standard_services import add_standard_services, set_serving
from meshwarden.stop_signals import stop_on_signals
from meshwarden.v1 import agent_pb2, agent_pb2_grpc

AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["Agent"].full_name
HANDLE = f"/{AGENT_SERVICE}/Handle"
DESIGNS = ("aio", "aio-bytes", "aio-thread-client", "sync", "sync-bytes", "sync-bridge")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
# The files of --svid-dir, as benchmarks/latency.py writes them.
SVID_FILE, KEY_FILE, BUNDLE_FILE = "svid.pem", "svid.key", "bundle.pem"


def refusal(context: grpc.ServicerContext | grpc.aio.ServicerContext[Any, Any], trust_domain: str | None) -> str:
    """Why the caller may not call (empty: it may), as sidecar/peer_api.py checks before its pipeline."""
    if trust_domain is None:
        return ""
    try:
        caller = peer_identity(context, trust_domain)  # type: ignore[arg-type]  # reads no message
    except Unauthenticated as exc:
        return str(exc)
    return "" if caller.kind == "agent" else f"{caller.spiffe_id} is not an agent's"


def passed_on(
    context: grpc.ServicerContext | grpc.aio.ServicerContext[Any, Any],
) -> tuple[tuple[str, str | bytes], ...]:
    """The agent's callback secret passes through, as a relay in front of an agent must."""
    return tuple((key, value) for key, value in context.invocation_metadata() or () if key == "authorization")


class Relay(agent_pb2_grpc.AgentServicer):
    """aio: grpc.aio server, messages parsed, forwarded on a grpc.aio stub (the sidecar today)."""

    def __init__(self, upstream: agent_pb2_grpc.AgentStub, trust_domain: str | None = None) -> None:
        self._upstream = upstream
        self._trust_domain = trust_domain  # set: read and check the caller's SPIFFE ID on every call

    async def Handle(
        self, request: agent_pb2.Delivery, context: grpc.aio.ServicerContext[agent_pb2.Delivery, agent_pb2.Outcome]
    ) -> agent_pb2.Outcome:
        if problem := refusal(context, self._trust_domain):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)
        try:
            outcome: agent_pb2.Outcome = await self._upstream.Handle(
                request, timeout=context.time_remaining(), metadata=passed_on(context)
            )
        except grpc.aio.AioRpcError as err:  # pass the upstream's status on as it is
            await context.abort(err.code(), err.details() or "")
        return outcome


class BytesRelay:
    """aio-bytes: grpc.aio server with a generic handler and a multicallable with no
    serializers: the serialized request and answer pass through as bytes, never parsed."""

    def __init__(self, upstream: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes], trust_domain: str | None) -> None:
        self._upstream, self._trust_domain = upstream, trust_domain

    async def handle(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        if problem := refusal(context, self._trust_domain):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)
        try:
            return await self._upstream(request, timeout=context.time_remaining(), metadata=passed_on(context))
        except grpc.aio.AioRpcError as err:
            await context.abort(err.code(), err.details() or "")


class SyncRelay:
    """sync and sync-bytes: a synchronous grpc server on a thread pool, forwarding on a
    synchronous channel from the handler's thread; `parse` False relays bytes as aio-bytes does."""

    def __init__(self, channel: grpc.Channel, trust_domain: str | None, parse: bool) -> None:
        self._trust_domain = trust_domain
        self._upstream: grpc.UnaryUnaryMultiCallable[Any, Any] = (
            channel.unary_unary(
                HANDLE,
                request_serializer=agent_pb2.Delivery.SerializeToString,
                response_deserializer=agent_pb2.Outcome.FromString,
            )
            if parse
            else channel.unary_unary(HANDLE)
        )

    def forward(self, request: object, timeout: float | None, metadata: tuple[tuple[str, str | bytes], ...]) -> Any:
        return self._upstream(request, timeout=timeout, metadata=metadata)

    def handle(self, request: object, context: grpc.ServicerContext) -> object:
        if problem := refusal(context, self._trust_domain):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)
        try:
            return self.forward(request, context.time_remaining(), passed_on(context))
        except grpc.RpcError as err:
            context.abort(err.code(), err.details() or "")  # type: ignore[attr-defined]  # a call's error is also a Call


class BridgeRelay:
    """sync-bridge: a synchronous grpc server on a thread pool whose handler hands the call
    to an asyncio loop (run_coroutine_threadsafe) and waits for it there, as a sidecar with
    a sync server and its async stages would; the loop forwards on a grpc.aio stub."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, upstream: agent_pb2_grpc.AgentStub, trust_domain: str | None
    ) -> None:
        self._loop, self._upstream, self._trust_domain = loop, upstream, trust_domain

    def handle(self, request: agent_pb2.Delivery, context: grpc.ServicerContext) -> agent_pb2.Outcome:
        if problem := refusal(context, self._trust_domain):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)
        forwarding = self._forward(request, context.time_remaining(), passed_on(context))
        try:
            return asyncio.run_coroutine_threadsafe(forwarding, self._loop).result()
        except grpc.aio.AioRpcError as err:
            context.abort(err.code(), err.details() or "")

    async def _forward(
        self, request: agent_pb2.Delivery, timeout: float | None, metadata: tuple[tuple[str, str | bytes], ...]
    ) -> agent_pb2.Outcome:
        outcome: agent_pb2.Outcome = await self._upstream.Handle(request, timeout=timeout, metadata=metadata)
        return outcome


class ThreadClientRelay(agent_pb2_grpc.AgentServicer):
    """aio-thread-client: the grpc.aio server; the forwarding call is a sync channel's, made
    on a thread of `threads` while the loop waits for it."""

    def __init__(self, channel: grpc.Channel, threads: ThreadPoolExecutor, trust_domain: str | None) -> None:
        self._upstream = SyncRelay(channel, None, parse=True)
        self._threads, self._trust_domain = threads, trust_domain

    async def Handle(
        self, request: agent_pb2.Delivery, context: grpc.aio.ServicerContext[agent_pb2.Delivery, agent_pb2.Outcome]
    ) -> agent_pb2.Outcome:
        if problem := refusal(context, self._trust_domain):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)
        forward = functools.partial(
            self._upstream.forward, request, timeout=context.time_remaining(), metadata=passed_on(context)
        )
        try:
            outcome: agent_pb2.Outcome = await asyncio.get_running_loop().run_in_executor(self._threads, forward)
        except grpc.RpcError as err:
            await context.abort(err.code(), err.details() or "")  # type: ignore[attr-defined]  # also a Call
        return outcome


def load_svid(directory: Path) -> Svid:
    return svid_from_pem(
        (directory / SVID_FILE).read_bytes(),
        (directory / KEY_FILE).read_bytes(),
        (directory / BUNDLE_FILE).read_bytes(),
    )


@dataclass
class Setup:
    """What every design shares: where to listen and forward, and with which identity."""

    listen: str
    upstream: str
    svid: Svid | None
    trust_domain: str | None  # set: serve mTLS and check each caller
    upstream_id: str | None  # set: dial the upstream with mTLS

    def channel_options(self) -> list[tuple[str, Any]]:
        return [*OPTIONS, *(expect_peer(self.upstream_id) if self.upstream_id else [])]

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        if self.svid is None or not self.upstream_id:
            return None
        return channel_credentials(self.svid, self.svid.trust_bundle_pem)

    def bind(self, server: grpc.Server | grpc.aio.Server) -> int:
        if self.svid is not None and self.trust_domain:
            current = self.svid  # a fixed SVID: the benchmark's run is shorter than its lifetime
            return int(
                server.add_secure_port(self.listen, server_credentials(lambda: current, require_client_auth=True))
            )
        return int(server.add_insecure_port(self.listen))

    def announce(self, port: int, design: str) -> None:
        announce_ready(
            "relay",
            listen=f"{self.listen.rpartition(':')[0]}:{port}",
            upstream=self.upstream,
            listen_tls="mtls" if self.trust_domain else "plaintext",
            upstream_tls="mtls" if self.upstream_id else "plaintext",
            design=design,
        )


def aio_channel(setup: Setup) -> grpc.aio.Channel:
    credentials = setup.channel_credentials()
    if credentials is None:
        return grpc.aio.insecure_channel(setup.upstream, options=setup.channel_options())
    return grpc.aio.secure_channel(setup.upstream, credentials, options=setup.channel_options())


def sync_channel(setup: Setup) -> grpc.Channel:
    credentials = setup.channel_credentials()
    if credentials is None:
        return grpc.insecure_channel(setup.upstream, options=setup.channel_options())
    return grpc.secure_channel(setup.upstream, credentials, options=setup.channel_options())


async def serve_aio(setup: Setup, design: str, workers: int) -> None:
    channel = aio_channel(setup)
    server = grpc.aio.server(options=OPTIONS)
    sync: grpc.Channel | None = None
    if design == "aio-thread-client":
        sync = sync_channel(setup)
        relay_on_threads = ThreadClientRelay(sync, ThreadPoolExecutor(max_workers=workers), setup.trust_domain)
        agent_pb2_grpc.add_AgentServicer_to_server(relay_on_threads, server)
    elif design == "aio":
        agent_pb2_grpc.add_AgentServicer_to_server(Relay(agent_pb2_grpc.AgentStub(channel), setup.trust_domain), server)
    else:  # aio-bytes
        relay = BytesRelay(channel.unary_unary(HANDLE), setup.trust_domain)
        handler: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(relay.handle)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(AGENT_SERVICE, {"Handle": handler}),))
    health = add_standard_services(server, [AGENT_SERVICE])
    port = setup.bind(server)
    await server.start()
    await set_serving(health, [AGENT_SERVICE], True)
    setup.announce(port, design)
    await stop_on_signals().wait()
    await server.stop(grace=1.0)
    await channel.close()
    if sync is not None:
        sync.close()


async def serve_sync(setup: Setup, design: str, workers: int) -> None:
    """The sync designs: the server's handlers run on a thread pool; this loop waits for a
    signal and, for sync-bridge, runs the forwarding calls."""
    server = grpc.server(ThreadPoolExecutor(max_workers=workers), options=OPTIONS)
    aio: grpc.aio.Channel | None = None
    sync: grpc.Channel | None = None
    handler: grpc.RpcMethodHandler[Any, Any]
    if design == "sync-bridge":
        aio = aio_channel(setup)
        bridge = BridgeRelay(asyncio.get_running_loop(), agent_pb2_grpc.AgentStub(aio), setup.trust_domain)
        handler = grpc.unary_unary_rpc_method_handler(
            bridge.handle,
            request_deserializer=agent_pb2.Delivery.FromString,
            response_serializer=agent_pb2.Outcome.SerializeToString,
        )
    else:
        sync = sync_channel(setup)
        relay = SyncRelay(sync, setup.trust_domain, parse=design == "sync")
        handler = (
            grpc.unary_unary_rpc_method_handler(
                relay.handle,
                request_deserializer=agent_pb2.Delivery.FromString,
                response_serializer=agent_pb2.Outcome.SerializeToString,
            )
            if design == "sync"
            else grpc.unary_unary_rpc_method_handler(relay.handle)
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(AGENT_SERVICE, {"Handle": handler}),))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = setup.bind(server)
    server.start()
    for name in ("", AGENT_SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    setup.announce(port, design)
    await stop_on_signals().wait()
    await asyncio.to_thread(lambda: server.stop(grace=1.0).wait())
    if aio is not None:
        await aio.close()
    if sync is not None:
        sync.close()


async def serve(
    listen: str, upstream: str, svid: Svid | None, mtls_listen: bool, upstream_id: str | None, design: str, workers: int
) -> None:
    if svid is None and (mtls_listen or upstream_id):
        raise SystemExit("grpc_relay.py: --mtls-listen and --upstream-spiffe-id need --svid-dir")
    trust_domain = svid.spiffe_id.removeprefix("spiffe://").partition("/")[0] if svid and mtls_listen else None
    setup = Setup(listen, upstream, svid, trust_domain, upstream_id if svid else None)
    if design.startswith("aio"):
        await serve_aio(setup, design, workers)
    else:
        await serve_sync(setup, design, workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="address to serve on (port 0: any free port)")
    parser.add_argument("--upstream", required=True, help="where to forward: an agent or another relay")
    parser.add_argument("--svid-dir", type=Path, help=f"holds {SVID_FILE}, {KEY_FILE} and {BUNDLE_FILE}")
    parser.add_argument("--mtls-listen", action="store_true", help="serve with mTLS, callers need an SVID")
    parser.add_argument("--upstream-spiffe-id", help="dial the upstream with mTLS; it must hold this SPIFFE ID")
    parser.add_argument("--design", choices=DESIGNS, default="aio", help="how the hop is built (see above)")
    parser.add_argument("--workers", type=int, default=32, help="the sync designs' thread pool")
    args = parser.parse_args()
    svid = load_svid(args.svid_dir) if args.svid_dir else None
    asyncio.run(
        serve(args.listen, args.upstream, svid, args.mtls_listen, args.upstream_spiffe_id, args.design, args.workers)
    )


if __name__ == "__main__":
    main()
