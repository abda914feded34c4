"""A bare grpc.aio relay of meshwarden.v1.Agent/Handle: the floor a Python sidecar starts from.

    python benchmarks/grpc_relay.py --listen 127.0.0.1:0 --upstream 127.0.0.1:7412
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
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import grpc

from meshwarden.identity.credentials import channel_credentials, expect_peer, server_credentials
from meshwarden.identity.peer import Unauthenticated, peer_identity
from meshwarden.identity.svid import Svid, svid_from_pem
from meshwarden.ready import announce_ready
from meshwarden.standard_services import add_standard_services, set_serving
from meshwarden.stop_signals import stop_on_signals
from meshwarden.v1 import agent_pb2, agent_pb2_grpc

AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["Agent"].full_name
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
# The files of --svid-dir, as benchmarks/latency.py writes them.
SVID_FILE, KEY_FILE, BUNDLE_FILE = "svid.pem", "svid.key", "bundle.pem"


class Relay(agent_pb2_grpc.AgentServicer):
    def __init__(self, upstream: agent_pb2_grpc.AgentStub, trust_domain: str | None = None) -> None:
        self._upstream = upstream
        self._trust_domain = trust_domain  # set: read and check the caller's SPIFFE ID on every call

    async def Handle(
        self, request: agent_pb2.Delivery, context: grpc.aio.ServicerContext[agent_pb2.Delivery, agent_pb2.Outcome]
    ) -> agent_pb2.Outcome:
        if self._trust_domain is not None:  # as sidecar/peer_api.py does before its pipeline
            try:
                caller = peer_identity(context, self._trust_domain)  # type: ignore[arg-type]  # reads no message
            except Unauthenticated as exc:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            if caller.kind != "agent":
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{caller.spiffe_id} is not an agent's")
        try:
            # The agent's callback secret passes through, as a relay in front of an agent must.
            passed = [(key, value) for key, value in context.invocation_metadata() or () if key == "authorization"]
            outcome: agent_pb2.Outcome = await self._upstream.Handle(
                request, timeout=context.time_remaining(), metadata=passed
            )
        except grpc.aio.AioRpcError as err:  # pass the upstream's status on as it is
            await context.abort(err.code(), err.details() or "")
        return outcome


def load_svid(directory: Path) -> Svid:
    return svid_from_pem(
        (directory / SVID_FILE).read_bytes(),
        (directory / KEY_FILE).read_bytes(),
        (directory / BUNDLE_FILE).read_bytes(),
    )


async def serve(listen: str, upstream: str, svid: Svid | None, mtls_listen: bool, upstream_id: str | None) -> None:
    if svid is None and (mtls_listen or upstream_id):
        raise SystemExit("grpc_relay.py: --mtls-listen and --upstream-spiffe-id need --svid-dir")
    if svid is not None and upstream_id:
        credentials = channel_credentials(svid, svid.trust_bundle_pem)
        channel = grpc.aio.secure_channel(upstream, credentials, options=[*OPTIONS, *expect_peer(upstream_id)])
    else:
        channel = grpc.aio.insecure_channel(upstream, options=OPTIONS)
    trust_domain = svid.spiffe_id.removeprefix("spiffe://").partition("/")[0] if svid and mtls_listen else None
    server = grpc.aio.server(options=OPTIONS)
    agent_pb2_grpc.add_AgentServicer_to_server(Relay(agent_pb2_grpc.AgentStub(channel), trust_domain), server)
    health = add_standard_services(server, [AGENT_SERVICE])
    if svid is not None and mtls_listen:
        current = svid  # a fixed SVID: the benchmark's run is shorter than its lifetime
        port = server.add_secure_port(listen, server_credentials(lambda: current, require_client_auth=True))
    else:
        port = server.add_insecure_port(listen)
    await server.start()
    await set_serving(health, [AGENT_SERVICE], True)
    announce_ready(
        "relay",
        listen=f"{listen.rpartition(':')[0]}:{port}",
        upstream=upstream,
        listen_tls="mtls" if trust_domain else "plaintext",
        upstream_tls="mtls" if upstream_id else "plaintext",
    )
    await stop_on_signals().wait()
    await server.stop(grace=1.0)
    await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="address to serve on (port 0: any free port)")
    parser.add_argument("--upstream", required=True, help="where to forward: an agent or another relay")
    parser.add_argument("--svid-dir", type=Path, help=f"holds {SVID_FILE}, {KEY_FILE} and {BUNDLE_FILE}")
    parser.add_argument("--mtls-listen", action="store_true", help="serve with mTLS, callers need an SVID")
    parser.add_argument("--upstream-spiffe-id", help="dial the upstream with mTLS; it must hold this SPIFFE ID")
    args = parser.parse_args()
    svid = load_svid(args.svid_dir) if args.svid_dir else None
    asyncio.run(serve(args.listen, args.upstream, svid, args.mtls_listen, args.upstream_spiffe_id))


if __name__ == "__main__":
    main()
