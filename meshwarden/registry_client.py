"""How every client (sidecars, the CLI, tests) opens a connection to the registry.

Always TLS: the client trusts the mesh's trust bundle, checks that the server holds the
registry's SPIFFE ID (spiffe_ids.dns_name via grpc.ssl_target_name_override), and presents
its own SVID when it has one (sidecars do; operators' CLI calls may not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import grpc

from meshwarden.identity.credentials import channel_credentials, expect_peer
from meshwarden.identity.spiffe_ids import registry_id
from meshwarden.identity.svid import Svid
from meshwarden.v1 import registry_pb2_grpc

DEFAULT_REGISTRY_ADDRESS: Final = "127.0.0.1:7400"

# Watch streams can sit idle for a long time; keepalive pings let the client notice a dead
# connection (registry host gone, NAT entry dropped) and reconnect with its last revision.
# The registry accepts pings this often (registry.app.SERVER_OPTIONS).
CHANNEL_OPTIONS: Final[list[tuple[str, Any]]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]


@dataclass(frozen=True)
class RegistryTrust:
    """What a client needs to reach the registry safely."""

    trust_domain: str
    bundle_pem: bytes
    svid: Svid | None = None  # present it (mTLS) when there is one


def registry_channel(address: str, trust: RegistryTrust) -> grpc.aio.Channel:
    """A grpc.aio channel to the registry at `address` ("HOST:PORT").

    Create it inside the event loop that uses it, and close it (`await channel.close()`, or
    `async with registry_channel(address, trust) as channel:`) when done.
    """
    return grpc.aio.secure_channel(
        address,
        channel_credentials(trust.svid, trust.bundle_pem),
        options=[*CHANNEL_OPTIONS, *expect_peer(registry_id(trust.trust_domain))],
    )


def registry_stub(channel: grpc.aio.Channel) -> registry_pb2_grpc.RegistryStub:
    """The meshwarden.v1.Registry client stub on `channel`."""
    return registry_pb2_grpc.RegistryStub(channel)
