"""How every client (sidecars, the CLI, tests) opens a connection to the registry.

One function builds the channel so that securing it is a change in one place: today it is a
plaintext channel; with mTLS it will present the caller's SVID and check the registry's.
"""

from __future__ import annotations

from typing import Any, Final

import grpc

from meshwarden.v1 import registry_pb2_grpc

DEFAULT_REGISTRY_ADDRESS: Final = "127.0.0.1:7400"

# Watch streams can sit idle for a long time; keepalive pings let the client notice a dead
# connection (registry host gone, NAT entry dropped) and reconnect with its last revision.
# The registry accepts pings this often (registry.app.SERVER_OPTIONS).
CHANNEL_OPTIONS: Final[list[tuple[str, Any]]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]


def registry_channel(address: str) -> grpc.aio.Channel:
    """A grpc.aio channel to the registry at `address` ("HOST:PORT").

    Create it inside the event loop that uses it, and close it (`await channel.close()`, or
    `async with registry_channel(address) as channel:`) when done.
    """
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def registry_stub(channel: grpc.aio.Channel) -> registry_pb2_grpc.RegistryStub:
    """The meshwarden.v1.Registry client stub on `channel`."""
    return registry_pb2_grpc.RegistryStub(channel)
