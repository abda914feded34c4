"""The sidecar's settings: declared once, resolved from flags > MESHWARDEN_SIDECAR_* > TOML,
validated at load time. Every default is safe for a single development machine."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from meshwarden.addresses import (
    AddressError,
    HostPort,
    ListenAddress,
    join_host_ports,
    parse_host_port,
    parse_host_ports,
    parse_listen,
    parse_optional_host_port,
)
from meshwarden.config_layers import (
    ConfigError,
    Option,
    boolean,
    choice,
    positive_float,
    positive_int,
    resolve,
    text,
)
from meshwarden.connection_liveness import MIN_KEEPALIVE_S
from meshwarden.identity.spiffe_ids import DEFAULT_TRUST_DOMAIN, check_trust_domain
from meshwarden.names import AGENT_NAME, AGENT_NAME_RULE
from meshwarden.sidecar import tracing_settings
from meshwarden.sidecar.discovery import consul_settings
from meshwarden.sidecar.discovery.consul_settings import ConsulSettings
from meshwarden.sidecar.tracing_settings import TracingSettings

ENV_PREFIX = "SIDECAR"
MiB = 1024 * 1024


def _optional_path(value: str) -> Path | None:
    return Path(value) if value else None


def _attempts(value: str) -> int:
    if not value.strip().isdigit() or not 1 <= int(value) <= 10:
        raise ValueError(f"must be a whole number from 1 to 10, got {value}")
    return int(value)


def _ratio(value: str) -> float:
    ratio = float(value)
    if not 0 <= ratio <= 1:
        raise ValueError(f"must be a number from 0 to 1, got {value}")
    return ratio


def _at_least_a_minute(value: str) -> float:
    seconds = float(value)
    if seconds < 60:
        raise ValueError(
            f"must be at least 60 (Consul reaps critical services after a minute at the earliest), got {value}"
        )
    return seconds


def _consul_wait(value: str) -> float:
    seconds = float(value)
    if not 1 <= seconds <= 600:
        raise ValueError(f"must be a number of seconds from 1 to 600 (Consul caps wait at 10 minutes), got {value}")
    return seconds


def _batch_size(value: str) -> int:
    if not value.strip().isdigit() or not 1 <= int(value) <= 1000:
        raise ValueError(f"must be a whole number from 1 to 1000 (the registry's limit per batch), got {value}")
    return int(value)


def _keepalive_s(value: str) -> float:
    seconds = float(value)
    if not seconds >= MIN_KEEPALIVE_S:  # the peer server refuses pings more frequent than this
        raise ValueError(f"must be a number of seconds from {MIN_KEEPALIVE_S:g} up, got {value}")
    return seconds


def _rate(value: str) -> float:
    rate = float(value)
    if not 0 < rate <= 1:
        raise ValueError(f"must be a number greater than 0 and at most 1, got {value}")
    return rate


def _agent_name(value: str) -> str:
    if not AGENT_NAME.fullmatch(value):
        raise ValueError(f"must be {AGENT_NAME_RULE}, got {value!r}")
    return value


def _replica_list(value: str) -> str:
    """--registry-mtls: empty, or one or more HOST:PORT separated by commas, kept as text."""
    if not value.strip():
        return ""
    return join_host_ports(parse_host_ports(value, what="registry mTLS address"))


# parse_host_port, parse_listen and check_trust_domain raise ValueError subclasses
# (AddressError, IdentityError), which config_layers reports with the setting's source.
OPTIONS: list[Option[Any]] = [
    Option("agent", _agent_name, None, "name of the agent this sidecar serves", required=True, metavar="NAME"),
    Option(
        "registry",
        lambda value: parse_host_ports(value, what="registry address"),
        (parse_host_port("127.0.0.1:7400"),),
        "registry address; several replicas' separated by commas: the first that answers is used, and another "
        "when it fails",
        metavar="HOST:PORT[,HOST:PORT...]",
    ),
    Option(
        "listen",
        parse_listen,
        parse_host_port("127.0.0.1:7410"),
        "local API for the agent: loopback HOST:PORT, or unix:PATH (a 0600 socket; production)",
        metavar="ADDRESS",
    ),
    Option(
        "peer_listen",
        parse_host_port,
        parse_host_port("127.0.0.1:7411"),
        "endpoint other sidecars deliver calls to",
        metavar="HOST:PORT",
    ),
    Option(
        "peer_advertise",
        text,
        "",
        "peer address other sidecars should dial (default: the bound peer address)",
        metavar="HOST:PORT",
    ),
    Option(
        "keepalive_s",
        _keepalive_s,
        10.0,
        "ping a connection to a peer or the registry this often while calls are on it; drop it when a ping "
        "goes unanswered as long",
        metavar="SECONDS",
    ),
    Option(
        "connect_timeout_s",
        positive_float,
        5.0,
        "give up connecting (TCP and TLS) to a peer sidecar or the registry after this long",
        metavar="SECONDS",
    ),
    Option(
        "app",
        parse_host_port,
        parse_host_port("127.0.0.1:7412"),
        "the agent's callback endpoint (serves meshwarden.v1.Agent)",
        metavar="HOST:PORT",
    ),
    Option(
        "admin_listen",
        lambda value: parse_optional_host_port(value, what="admin listen address"),
        parse_host_port("127.0.0.1:9901"),
        "admin HTTP port: /metrics (Prometheus), /healthz, /readyz, /status and /config (JSON); port 0 picks one; off disables",
        metavar="HOST:PORT|off",
    ),
    Option(
        "gateway_listen",
        lambda value: None if value.strip().lower() == "off" else parse_listen(value, what="gateway listen address"),
        parse_host_port("127.0.0.1:7413"),
        "the agent's HTTP gateway for model clients (/v1/) and MCP clients (/mcp): loopback HOST:PORT, or "
        "unix:PATH (a 0600 socket); port 0 picks one; off disables",
        metavar="ADDRESS|off",
    ),
    Option(
        "instance_id",
        text,
        "",
        "stable id of this agent instance (default: <agent>-<random>, made once and kept in <data-dir>/instance-id)",
        metavar="ID",
    ),
    Option("max_payload_bytes", positive_int, 4 * MiB, "largest payload accepted, in bytes", metavar="N"),
    Option(
        "model_timeout_s",
        positive_float,
        300.0,
        "longest a model call through the gateway may take, fallbacks and streaming included",
        metavar="SECONDS",
    ),
    Option(
        "breaker_failures",
        positive_int,
        5,
        "consecutive failures after which an instance's circuit opens",
        metavar="N",
    ),
    Option(
        "breaker_reset_s",
        positive_float,
        5.0,
        "seconds an open circuit waits before letting one trial call through",
        metavar="SECONDS",
    ),
    Option(
        "breaker_failure_rate",
        _rate,
        0.5,
        "or: the share of failed calls over --breaker-window-s that opens an instance's circuit",
        metavar="RATIO",
    ),
    Option(
        "breaker_window_s",
        positive_float,
        10.0,
        "the window the failure rate is measured over",
        metavar="SECONDS",
    ),
    Option(
        "breaker_min_calls",
        positive_int,
        20,
        "calls the window must hold before the failure rate can open a circuit",
        metavar="N",
    ),
    Option("default_timeout_s", positive_float, 30.0, "deadline applied when the agent sets none", metavar="SECONDS"),
    Option(
        "retry_max_attempts",
        _attempts,
        3,
        "attempts per call, the first included, when a retry is safe (1 turns retries off)",
        metavar="N",
    ),
    Option(
        "retry_budget_ratio",
        _ratio,
        0.2,
        "retries may add at most this share of the recent call rate (plus 10 retries/s)",
        metavar="RATIO",
    ),
    Option(
        "idempotency_ttl_s",
        positive_float,
        600.0,
        "how long a callee remembers the result of a call with an idempotency key",
        metavar="SECONDS",
    ),
    Option(
        "idempotency_run_limit_s",
        positive_float,
        300.0,
        "how long a call with an idempotency key may run at this sidecar's agent once handed to it, "
        "when its caller's deadline is sooner (it finishes even when its caller stops waiting)",
        metavar="SECONDS",
    ),
    Option(
        "receipts",
        boolean,
        True,
        "write a receipt of every call and ship them to the registry; false only to measure what they cost",
        metavar="true|false",
    ),
    Option(
        "receipt_sync",
        choice("normal", "full"),
        "normal",
        "normal: a spooled receipt survives a crash or kill -9; full: also a power loss (one fsync per call)",
        metavar="normal|full",
    ),
    Option(
        "receipt_ship_interval_s",
        positive_float,
        1.0,
        "how often spooled receipts are shipped to the registry",
        metavar="SECONDS",
    ),
    Option("receipt_batch_size", _batch_size, 200, "receipts per batch shipped to the registry", metavar="N"),
    Option(
        "receipt_spool_max_bytes",
        positive_int,
        1024**3,
        "receipts the registry has not taken yet, in bytes, before new calls are refused (no call without a receipt)",
        metavar="BYTES",
    ),
    Option(
        "receipt_spool_max_age_s",
        positive_float,
        7 * 24 * 3600.0,
        "age of the oldest receipt the registry has not taken yet before new calls are refused",
        metavar="SECONDS",
    ),
    Option(
        "data_dir", Path, None, "SVID, trust bundle and sockets (default ./.meshwarden/sidecars/<agent>)", metavar="DIR"
    ),
    Option(
        "tool_credentials_dir",
        _optional_path,
        None,
        "directory of the MCP servers' secrets: one 0600 file per credential name in the bundle's "
        "mcp_servers.toml (or set MESHWARDEN_TOOL_CREDENTIAL_<NAME>)",
        metavar="DIR",
    ),
    Option(
        "api_token_file",
        _optional_path,
        None,
        "file holding the token the agent must send on every local call",
        metavar="FILE",
    ),
    # identity
    Option(
        "trust_domain", check_trust_domain, DEFAULT_TRUST_DOMAIN, "SPIFFE trust domain of the mesh", metavar="DOMAIN"
    ),
    Option(
        "spiffe_endpoint_socket",
        text,
        "",
        "SPIRE agent Workload API socket (else SPIFFE_ENDPOINT_SOCKET; else the registry's embedded issuer)",
        metavar="unix:PATH",
    ),
    Option(
        "join_token",
        text,
        "",
        "one-time join token for this agent (prefer the env var or --join-token-file)",
        metavar="TOKEN",
    ),
    Option("join_token_file", _optional_path, None, "file holding the join token", metavar="FILE"),
    Option(
        "trust_bundle",
        _optional_path,
        None,
        "PEM trust bundle of the mesh (skips learning it from the registry)",
        metavar="FILE",
    ),
    Option(
        "registry_mtls",
        _replica_list,
        "",
        "registry mTLS address for SVID holders (default: what the registry advertises); several replicas' "
        "separated by commas, the next used when one fails",
        metavar="HOST:PORT[,HOST:PORT...]",
    ),
    Option(
        "bundle_keys",
        _optional_path,
        None,
        "directory of trusted policy bundle signing keys, one <key-id>.pub each",
        metavar="DIR",
    ),
    Option(
        "allow_without_policy",
        boolean,
        False,
        "DEVELOPMENT ONLY: allow every call while no policy bundle is active (default: deny)",
        metavar="true|false",
    ),
    Option("ca_pin", text, "", "sha256:<hex> fingerprint the registry's CA must have", metavar="sha256:HEX"),
    # discovery
    Option(
        "discovery",
        choice("registry", "consul"),
        "registry",
        "where routing learns the live instances: the registry's watch stream, or Consul (CONSUL_HTTP_ADDR, "
        "CONSUL_HTTP_TOKEN, CONSUL_CACERT, ... as for the consul CLI)",
        metavar="registry|consul",
    ),
    Option(
        "consul_check_ttl_s",
        positive_float,
        10.0,
        "TTL of the Consul check the sidecar renews every TTL/3; a crashed sidecar leaves routing after it",
        metavar="SECONDS",
    ),
    Option(
        "consul_deregister_critical_after_s",
        _at_least_a_minute,
        60.0,
        "Consul removes an instance whose check stayed critical this long (Consul's minimum is 60)",
        metavar="SECONDS",
    ),
    Option(
        "consul_wait_s",
        _consul_wait,
        30.0,
        "longest a Consul blocking query waits for a change (1 to 600)",
        metavar="SECONDS",
    ),
]


@dataclass(frozen=True, kw_only=True)
class SidecarConfig:
    agent: str
    # The replica in use (the first that answered at start); registry_replicas holds them all.
    registry: HostPort
    registry_replicas: tuple[HostPort, ...] = ()
    listen: ListenAddress
    peer_listen: HostPort
    peer_advertise: str
    keepalive_s: float
    connect_timeout_s: float
    app: HostPort
    instance_id: str
    max_payload_bytes: int
    default_timeout_s: float
    retry_max_attempts: int
    retry_budget_ratio: float
    idempotency_ttl_s: float
    idempotency_run_limit_s: float
    receipts: bool
    receipt_sync: Literal["normal", "full"]
    receipt_ship_interval_s: float
    receipt_batch_size: int
    receipt_spool_max_bytes: int
    receipt_spool_max_age_s: float
    breaker_failures: int
    breaker_reset_s: float
    breaker_failure_rate: float
    breaker_window_s: float
    breaker_min_calls: int
    data_dir: Path
    api_token_file: Path | None
    tool_credentials_dir: Path | None
    trust_domain: str
    spiffe_endpoint_socket: str
    join_token: str = field(repr=False)
    join_token_file: Path | None
    trust_bundle: Path | None
    ca_pin: str
    bundle_keys: Path | None
    allow_without_policy: bool
    registry_mtls: str
    discovery: str = "registry"
    consul_check_ttl_s: float = 10.0
    consul_deregister_critical_after_s: float = 60.0
    consul_wait_s: float = 30.0
    # Read from the standard CONSUL_* variables when discovery is "consul".
    consul: ConsulSettings | None = None
    admin_listen: HostPort | None = None
    gateway_listen: ListenAddress | None = None
    # From the standard OTEL_* variables (sidecar/tracing_settings.py); off without an endpoint.
    tracing: TracingSettings = field(default_factory=TracingSettings)
    model_timeout_s: float = 300.0
    # The sidecar's environment, where models.json credentials may name variables holding
    # provider keys (read by sidecar/provider_credentials.py). Never shown.
    provider_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    # MESHWARDEN_TOOL_CREDENTIAL_<NAME> variables, by NAME (upper case, '-' as '_'): MCP
    # servers' secrets for hosts that hand secrets over as variables rather than files.
    tool_credentials_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Where each option's value came from ("flag --listen", "env MESHWARDEN_SIDECAR_...",
    # "file PATH", "default"), by option key: `meshwarden sidecar config` shows it.
    origins: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def grpc_message_limit_bytes(self) -> int:
        """gRPC's own limit sits 1 MiB above the payload limit, so an oversized payload reaches
        the payload_limit stage and gets its clear message instead of gRPC's generic one."""
        return self.max_payload_bytes + MiB


def load(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> SidecarConfig:
    env = os.environ if environ is None else environ
    origins: dict[str, str] = {}
    values = resolve(OPTIONS, args, ENV_PREFIX, env, origins)
    if values["data_dir"] is None:
        values["data_dir"] = Path(".meshwarden") / "sidecars" / values["agent"]
        origins["data_dir"] = "default (./.meshwarden/sidecars/<agent>)"
    if not values["spiffe_endpoint_socket"]:
        values["spiffe_endpoint_socket"] = env.get("SPIFFE_ENDPOINT_SOCKET", "")  # the SPIFFE standard variable
    if values["ca_pin"] and not re.fullmatch(r"sha256:[0-9a-f]{64}", values["ca_pin"]):
        raise ConfigError(f"--ca-pin must be sha256:<64 hex digits>, got {values['ca_pin']!r}")
    if values["peer_advertise"]:
        try:
            parse_host_port(values["peer_advertise"], what="--peer-advertise")
        except AddressError as exc:
            raise ConfigError(str(exc)) from exc
    elif values["peer_listen"].host in {"0.0.0.0", "::"}:
        raise ConfigError(
            f"--peer-listen {values['peer_listen']} binds every interface; set --peer-advertise to the "
            "address other sidecars should dial"
        )
    if values["discovery"] == "consul":
        values["consul"] = consul_settings.from_environment(env)
    replicas = values.pop("registry")
    return SidecarConfig(
        registry=replicas[0],
        registry_replicas=replicas,
        **values,
        tracing=tracing_settings.from_environ(env),
        provider_env=dict(env),
        tool_credentials_env=_tool_credentials(env),
        origins=origins,
    )


TOOL_CREDENTIAL_PREFIX = "MESHWARDEN_TOOL_CREDENTIAL_"


def _tool_credentials(env: Mapping[str, str]) -> dict[str, str]:
    return {k.removeprefix(TOOL_CREDENTIAL_PREFIX): v for k, v in env.items() if k.startswith(TOOL_CREDENTIAL_PREFIX)}
