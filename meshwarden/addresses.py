"""HOST:PORT parsing shared by every flag that takes an address."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

# The registry's default --listen, where clients look for it when told nothing else.
DEFAULT_REGISTRY_ADDRESS: Final = "127.0.0.1:7400"


class AddressError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_host_port(text: str, *, what: str = "address") -> HostPort:
    """Parses "127.0.0.1:7000", "[::1]:7000" or "localhost:0"; port 0 means "pick one"."""
    raw = text.strip()
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise AddressError(f"{what} must be HOST:PORT or [IPv6]:PORT, got {text!r}")
        port_text = rest[1:]
    else:
        host, sep, port_text = raw.rpartition(":")
        if not sep or not host or ":" in host:
            raise AddressError(f"{what} must be HOST:PORT (IPv6 in brackets), got {text!r}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise AddressError(f"{what} port must be a number from 0 to 65535, got {text!r}")
    return HostPort(host, int(port_text))


def parse_optional_host_port(text: str, *, what: str = "address") -> HostPort | None:
    """HOST:PORT, or "off" for none (the admin ports)."""
    if text.strip().lower() == "off":
        return None
    return parse_host_port(text, what=what)


@dataclass(frozen=True, slots=True)
class UnixSocket:
    path: str

    def __str__(self) -> str:
        return f"unix:{self.path}"

    @property
    def is_loopback(self) -> bool:
        return True  # never reachable from another host


ListenAddress = HostPort | UnixSocket


def parse_listen(text: str, *, what: str = "address") -> ListenAddress:
    """HOST:PORT, or unix:PATH (also unix:///abs/path) for a Unix domain socket."""
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise AddressError(f"{what} unix socket needs a path, e.g. unix:/run/meshwarden/agent.sock")
        return UnixSocket(path)
    return parse_host_port(text, what=what)


MAX_REPLICA_ADDRESSES: Final = 16


def parse_host_ports(text: str, *, what: str = "address") -> tuple[HostPort, ...]:
    """One or more HOST:PORT separated by commas ("10.0.0.1:7400,10.0.0.2:7400"): the
    addresses of several registry replicas, tried in order."""
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise AddressError(f"{what} must be one or more HOST:PORT separated by commas, got {text!r}")
    if len(parts) > MAX_REPLICA_ADDRESSES:
        raise AddressError(f"{what} holds {len(parts)} addresses; at most {MAX_REPLICA_ADDRESSES}")
    return tuple(parse_host_port(part, what=what) for part in parts)


def join_host_ports(addresses: tuple[HostPort, ...]) -> str:
    return ",".join(str(address) for address in addresses)
