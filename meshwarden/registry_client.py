"""How every client (sidecars, the CLI, tests) opens a connection to the registry.

Always TLS: the client trusts the mesh's trust bundle, checks that the server holds the
registry's SPIFFE ID (spiffe_ids.dns_name via grpc.ssl_target_name_override), and presents
its own SVID when it has one (sidecars do; operators' CLI calls may not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import grpc

from meshwarden.addresses import AddressError, HostPort, parse_host_port
from meshwarden.identity.credentials import channel_credentials, expect_peer
from meshwarden.identity.spiffe_ids import registry_id
from meshwarden.identity.svid import Svid
from meshwarden.v1 import registry_pb2_grpc

# Watch streams can sit idle for a long time; keepalive pings let the client notice a dead
# connection (registry host gone, NAT entry dropped) and reconnect with its last revision.
# The registry accepts pings this often (registry.app.SERVER_OPTIONS).
CHANNEL_OPTIONS: Final[list[tuple[str, Any]]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # Without these two, gRPC core stops pinging an idle stream after two pings, and a
    # flow-control ping in flight holds keepalive back for 60 s (meshwarden/connection_liveness.py).
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.ping_timeout_ms", 10_000),
]


@dataclass(frozen=True)
class RegistryTrust:
    """What a client needs to reach the registry safely."""

    trust_domain: str
    bundle_pem: bytes
    svid: Svid | None = None  # present it (mTLS) when there is one


def registry_channel(address: str, trust: RegistryTrust, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """A grpc.aio channel to the registry at `address` ("HOST:PORT"); `options` replace the
    default channel options of the same name (a sidecar's keepalive settings).

    Create it inside the event loop that uses it, and close it (`await channel.close()`, or
    `async with registry_channel(address, trust) as channel:`) when done.
    """
    return grpc.aio.secure_channel(
        address,
        channel_credentials(trust.svid, trust.bundle_pem),
        options=[*_merged(CHANNEL_OPTIONS, options), *expect_peer(registry_id(trust.trust_domain))],
    )


def _merged(defaults: Sequence[tuple[str, Any]], chosen: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    names = {name for name, _ in chosen}
    return [*(option for option in defaults if option[0] not in names), *chosen]


def mtls_address(dialled: str, advertised: str) -> str:
    """Where to reach the registry's mTLS port, from the address dialled for its TLS port and
    the `registry_mtls_address` it returned (GetTrustBundle, Enroll, Renew). The registry's
    mTLS port is separate because gRPC Python servers cannot ask for a client certificate
    without requiring one; an advertised address with no host (":7401") means "the host you
    dialled" (the registry listens on a wildcard address)."""
    if not advertised.startswith(":"):
        return str(parse_host_port(advertised, what="registry mTLS address"))
    port = advertised[1:]
    if not port.isdigit() or int(port) > 65535:
        raise AddressError(f"registry mTLS address must be HOST:PORT or :PORT, got {advertised!r}")
    return str(HostPort(parse_host_port(dialled, what="registry address").host, int(port)))


def registry_stub(channel: grpc.aio.Channel) -> registry_pb2_grpc.RegistryStub:
    """The meshwarden.v1.Registry client stub on `channel`."""
    return registry_pb2_grpc.RegistryStub(channel)
