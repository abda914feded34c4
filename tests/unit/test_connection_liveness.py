"""The gRPC settings that make a silent connection fail fast (meshwarden/connection_liveness.py)."""

from __future__ import annotations

from meshwarden import connection_liveness
from meshwarden.registry_client import CHANNEL_OPTIONS, _merged


def test_every_ping_is_bounded_and_pings_never_stop_on_a_quiet_stream() -> None:
    options = dict(connection_liveness.channel_options(keepalive_s=2, connect_timeout_s=3))
    assert options["grpc.keepalive_time_ms"] == options["grpc.keepalive_timeout_ms"] == 2000
    assert options["grpc.http2.ping_timeout_ms"] == 2000  # a BDP ping in flight must not hold keepalive back
    assert options["grpc.http2.max_pings_without_data"] == 0
    assert options["grpc.min_reconnect_backoff_ms"] == 3000  # gRPC core's connect timeout
    assert options["grpc.initial_reconnect_backoff_ms"] == 250  # a registry back within a second is reached at once
    assert options["grpc.max_reconnect_backoff_ms"] == 5000


def test_servers_accept_pings_as_often_as_the_fastest_keepalive_allowed() -> None:
    floor = dict(connection_liveness.SERVER_OPTIONS)["grpc.http2.min_recv_ping_interval_without_data_ms"]
    assert floor == connection_liveness.MIN_KEEPALIVE_S * 1000


def test_a_sidecars_settings_replace_the_registry_clients_defaults() -> None:
    merged = _merged(CHANNEL_OPTIONS, connection_liveness.channel_options(1, 1))
    names = [name for name, _ in merged]
    assert len(names) == len(set(names))
    assert dict(merged)["grpc.keepalive_time_ms"] == 1000
