"""How a sidecar notices that a connection it opened (to a peer sidecar or to the registry)
went silent, so calls on it fail over and streams on it reconnect, instead of waiting out
their deadline or hanging for good.

Keepalive pings: while calls are on a connection, the client pings it every `keepalive_s` and
drops it when a ping goes unanswered as long; its calls then fail with UNAVAILABLE (a keyed
call is retried elsewhere; an unkeyed one, which may have started, is not) and a watch
stream reconnects. Three gRPC core defaults defeat that and are changed here: a client sends
at most two pings without data in between (a long call or an idle watch stream sends none);
a ping already in flight (gRPC's flow-control "BDP" ping) holds a keepalive ping back; and an
unanswered ping of either kind is given 60 s.

Connect timeout: gRPC core waits 20 s for the TCP and TLS handshake by default
(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS doubles as the connect timeout). A call queued behind a
handshake that never completes certainly never started, so it fails as NotSent and is
retried at once on another instance.

Reconnect backoff starts at 1 s and grows to 120 s by default. It starts at 0.25 s here, so a
registry or peer that restarts in a second or two is reached again within a fraction of a
second rather than up to 2.5 s later (calls and reports fail fast while a channel backs off);
and it is capped at a few seconds, because the circuit breaker already paces calls to a
failing instance, and a channel still backing off would fail the breaker's trial call after
the instance recovered.

The servers must accept the pings: by default gRPC core answers a client pinging more often
than every 5 minutes without data with GOAWAY (too_many_pings).
"""

from __future__ import annotations

from typing import Final

# No keepalive setting below this is accepted (sidecar/config.py), so servers' floor holds.
MIN_KEEPALIVE_S: Final = 1.0
_FIRST_RECONNECT_BACKOFF_S: Final = 0.25
MAX_RECONNECT_BACKOFF_S: Final = 5.0
# gRPC core spreads each backoff by up to this fraction either way.
RECONNECT_JITTER: Final = 0.2

SERVER_OPTIONS: Final[list[tuple[str, int]]] = [
    ("grpc.http2.min_recv_ping_interval_without_data_ms", int(MIN_KEEPALIVE_S * 1000)),
    ("grpc.keepalive_permit_without_calls", 0),
]


def channel_options(keepalive_s: float, connect_timeout_s: float) -> list[tuple[str, int]]:
    keepalive_ms = int(keepalive_s * 1000)
    return [
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", keepalive_ms),
        ("grpc.http2.ping_timeout_ms", keepalive_ms),  # any unanswered ping, BDP ones included
        ("grpc.keepalive_permit_without_calls", 0),  # an idle connection costs nothing; no pings
        ("grpc.http2.max_pings_without_data", 0),  # a long call sends no data: keep pinging anyway
        ("grpc.min_reconnect_backoff_ms", int(connect_timeout_s * 1000)),
        ("grpc.initial_reconnect_backoff_ms", int(_FIRST_RECONNECT_BACKOFF_S * 1000)),
        ("grpc.max_reconnect_backoff_ms", int(max(MAX_RECONNECT_BACKOFF_S, connect_timeout_s) * 1000)),
    ]
