"""The SPIFFE Workload API, served by the sidecar on a Unix socket when the embedded issuer
supplies identity.

The sidecar then reads its own SVIDs back through `spiffe.X509Source` exactly as it would
from a SPIRE agent, so both sources share one code path; the agent may use the same socket
(SPIFFE_ENDPOINT_SOCKET) for mTLS to tools outside the mesh. Only FetchX509SVID and
FetchX509Bundles are served; JWT-SVIDs answer UNIMPLEMENTED. The socket is created with mode
0600, so only this user's processes can ask it for the private key.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from spiffe._proto import workload_pb2, workload_pb2_grpc  # the spiffe package's stubs of workload.proto

from meshwarden.identity.svid import Svid

log = logging.getLogger(__name__)

WORKLOAD_HEADER = "workload.spiffe.io"


class SvidFeed:
    """The latest SVID, and a signal for the streams that wait for the next one."""

    def __init__(self, svid: Svid) -> None:
        self.svid = svid
        self._changed = asyncio.Condition()

    async def publish(self, svid: Svid) -> None:
        async with self._changed:
            self.svid = svid
            self._changed.notify_all()

    async def updates(self) -> AsyncIterator[Svid]:
        sent: Svid | None = None
        while True:
            async with self._changed:
                await self._changed.wait_for(self._newer_than(sent))
                sent = self.svid
            yield sent

    def _newer_than(self, sent: Svid | None) -> Callable[[], bool]:
        return lambda: self.svid is not sent


class WorkloadApi(workload_pb2_grpc.SpiffeWorkloadAPIServicer):
    def __init__(self, feed: SvidFeed) -> None:
        self._feed = feed

    async def FetchX509SVID(  # type: ignore[override]
        self, request: workload_pb2.X509SVIDRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[workload_pb2.X509SVIDResponse]:
        await _require_header(context)
        async for svid in self._feed.updates():
            yield workload_pb2.X509SVIDResponse(svids=[_to_proto(svid)])

    async def FetchX509Bundles(  # type: ignore[override]
        self, request: workload_pb2.X509BundlesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[workload_pb2.X509BundlesResponse]:
        await _require_header(context)
        async for svid in self._feed.updates():
            domain = svid.spiffe_id.removeprefix("spiffe://").split("/", 1)[0]
            yield workload_pb2.X509BundlesResponse(bundles={domain: _der_concat(svid.trust_bundle_pem)})


# sockaddr_un's sun_path holds 108 bytes with the terminating NUL on Linux: a longer path
# cannot be bound, and gRPC says only "Failed to bind".
MAX_SOCKET_PATH_BYTES = 107


class SocketPathTooLong(ValueError):
    """The socket's path is longer than a unix socket's may be; says which and what to do."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"the Workload API socket {path} is {len(os.fsencode(path))} bytes long, and a unix socket path may "
            f"have at most {MAX_SOCKET_PATH_BYTES}: give the sidecar a shorter --data-dir (or run it from a "
            "shorter working directory)"
        )
        self.path = path


async def serve(feed: SvidFeed, socket_path: Path) -> grpc.aio.Server:
    if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH_BYTES:
        raise SocketPathTooLong(socket_path)
    socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    socket_path.unlink(missing_ok=True)
    server = grpc.aio.server()
    workload_pb2_grpc.add_SpiffeWorkloadAPIServicer_to_server(WorkloadApi(feed), server)
    previous = os.umask(0o177)  # the socket file is created 0600
    try:
        server.add_insecure_port(f"unix:{socket_path}")
        await server.start()
    finally:
        os.umask(previous)
    os.chmod(socket_path, 0o600)
    log.info("serving the SPIFFE Workload API on %s", socket_path)
    return server


async def _require_header(context: grpc.aio.ServicerContext[object, object]) -> None:
    # The Workload API spec: requests without this header are refused, so that a browser or
    # an SSRF-style proxy cannot be tricked into fetching SVIDs.
    if not any(k == WORKLOAD_HEADER and v == "true" for k, v in context.invocation_metadata() or ()):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "security header missing from request")


def _to_proto(svid: Svid) -> workload_pb2.X509SVID:
    key = serialization.load_pem_private_key(svid.private_key_pem, password=None)
    return workload_pb2.X509SVID(
        spiffe_id=svid.spiffe_id,
        x509_svid=_der_concat(svid.cert_chain_pem),
        x509_svid_key=key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        bundle=_der_concat(svid.trust_bundle_pem),
    )


def _der_concat(pem: bytes) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(pem))
