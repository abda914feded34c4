"""The sidecar's settings: declared once, resolved from flags > MESHWARDEN_SIDECAR_* > TOML,
validated at load time. Every default is safe for a single development machine."""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshwarden.addresses import AddressError, HostPort, parse_host_port
from meshwarden.config_layers import (
    ConfigError,
    Option,
    positive_float,
    positive_int,
    resolve,
    text,
)
from meshwarden.names import AGENT_NAME, AGENT_NAME_RULE

ENV_PREFIX = "SIDECAR"
MiB = 1024 * 1024


def _address(value: str) -> HostPort:
    try:
        return parse_host_port(value)
    except AddressError as exc:
        raise ValueError(str(exc)) from exc


def _agent_name(value: str) -> str:
    if not AGENT_NAME.fullmatch(value):
        raise ValueError(f"must be {AGENT_NAME_RULE}, got {value!r}")
    return value


OPTIONS: list[Option[Any]] = [
    Option("agent", _agent_name, None, "name of the agent this sidecar serves", required=True, metavar="NAME"),
    Option("registry", _address, parse_host_port("127.0.0.1:7400"), "registry address", metavar="HOST:PORT"),
    Option(
        "listen",
        _address,
        parse_host_port("127.0.0.1:7410"),
        "local API for the agent (keep it on loopback)",
        metavar="HOST:PORT",
    ),
    Option(
        "peer_listen",
        _address,
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
        "app",
        _address,
        parse_host_port("127.0.0.1:7412"),
        "the agent's callback endpoint (serves meshwarden.v1.Agent)",
        metavar="HOST:PORT",
    ),
    Option("instance_id", text, "", "stable id of this agent instance (default: <agent>-<random>)", metavar="ID"),
    Option("max_payload_bytes", positive_int, 4 * MiB, "largest payload accepted, in bytes", metavar="N"),
    Option("default_timeout_s", positive_float, 30.0, "deadline applied when the agent sets none", metavar="SECONDS"),
]


@dataclass(frozen=True, kw_only=True)
class SidecarConfig:
    agent: str
    registry: HostPort
    listen: HostPort
    peer_listen: HostPort
    peer_advertise: str
    app: HostPort
    instance_id: str
    max_payload_bytes: int
    default_timeout_s: float

    @property
    def grpc_message_limit_bytes(self) -> int:
        """gRPC's own limit sits 1 MiB above the payload limit, so an oversized payload reaches
        the payload_limit stage and gets its clear message instead of gRPC's generic one."""
        return self.max_payload_bytes + MiB


def load(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> SidecarConfig:
    values = resolve(OPTIONS, args, ENV_PREFIX, environ)
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
    if not values["instance_id"]:
        values["instance_id"] = f"{values['agent']}-{secrets.token_hex(4)}"
    return SidecarConfig(**values)
