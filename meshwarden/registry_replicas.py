"""Which of several registry addresses to use: the first that accepts a connection.

Sidecars and the CLI take several registry addresses (`--registry a:7400,b:7400`, the replicas
of issue 18), or one name that resolves to several. The TLS handshake and every RPC check the
registry's SPIFFE ID whatever address answers, so reaching a replica is all this decides: each
address (each resolved IP of a name) is tried in order with a TCP connect, and every one
skipped is reported with why, so the caller can say in its log that it moved on.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

from meshwarden.addresses import HostPort

DEFAULT_CONNECT_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Skipped:
    address: HostPort
    reason: str


class NoReplicaReachable(Exception):
    def __init__(self, skipped: list[Skipped]) -> None:
        self.skipped = skipped
        tried = "; ".join(f"{s.address}: {s.reason}" for s in skipped)
        super().__init__(f"no registry replica answers ({tried})")


def first_reachable(
    addresses: tuple[HostPort, ...],
    on_skip: Callable[[Skipped, HostPort | None], None],
    timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> HostPort:
    """The first address in `addresses` that accepts a TCP connection (a name counts once one
    of its IPs does); `on_skip(skipped, next_address)` is told about every one passed over.
    Blocking: call it in a worker thread from async code. A single address is returned as is,
    untried: the caller's own connection attempt reports its failure."""
    if len(addresses) == 1:
        return addresses[0]
    skipped: list[Skipped] = []
    for index, address in enumerate(addresses):
        try:
            socket.create_connection((address.host, address.port), timeout=timeout_s).close()
        except OSError as exc:
            miss = Skipped(address, exc.strerror or type(exc).__name__)
            skipped.append(miss)
            on_skip(miss, addresses[index + 1] if index + 1 < len(addresses) else None)
            continue
        return address
    raise NoReplicaReachable(skipped)
