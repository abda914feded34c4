"""The registry's settings, declared once and resolved from flags > MESHWARDEN_REGISTRY_* > TOML.

Validated here, at load time, so that a bad value stops the registry before it binds a port,
with a message naming the setting, the rule and the value.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from meshwarden.addresses import AddressError, HostPort, parse_host_port
from meshwarden.config_layers import ConfigError, Option, positive_float, positive_int, resolve

ENV_PREFIX: Final = "REGISTRY"
DEFAULT_LISTEN: Final = HostPort("127.0.0.1", 7400)
DEFAULT_DATA_DIR: Final = Path("./.meshwarden/registry")
DEFAULT_HEARTBEAT_INTERVAL_S: Final = 2.0
# A lease survives two missed heartbeats (2.5 intervals) but not three: a sidecar that stopped
# is gone from the catalog within three intervals, and one late heartbeat is forgiven.
DEFAULT_TTL_PER_HEARTBEAT: Final = 2.5
MAX_TTL_PER_HEARTBEAT: Final = 3.0
DEFAULT_EVENT_LOG_RETENTION: Final = 10_000
DEFAULT_WATCH_QUEUE_EVENTS: Final = 1024


def default_lease_ttl_s(heartbeat_interval_s: float) -> float:
    return DEFAULT_TTL_PER_HEARTBEAT * heartbeat_interval_s


@dataclass(frozen=True, kw_only=True)
class RegistryConfig:
    listen: HostPort = DEFAULT_LISTEN
    data_dir: Path = DEFAULT_DATA_DIR
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    # Left unset (NaN), it becomes 2.5 x heartbeat_interval_s in __post_init__, so that
    # RegistryConfig(heartbeat_interval_s=0.3) is valid as written.
    lease_ttl_s: float = math.nan
    # How many catalog events are kept so that a watcher can resume by revision.
    event_log_retention: int = DEFAULT_EVENT_LOG_RETENTION
    # Events queued for one watcher before it is cut off (it resumes by revision).
    watch_queue_events: int = DEFAULT_WATCH_QUEUE_EVENTS

    def __post_init__(self) -> None:
        hb = self.heartbeat_interval_s
        if not hb > 0:
            raise ConfigError(f"heartbeat_interval_s must be greater than 0, got {hb}")
        if math.isnan(self.lease_ttl_s):
            object.__setattr__(self, "lease_ttl_s", default_lease_ttl_s(hb))  # frozen: set once, here
        ttl = self.lease_ttl_s
        if not hb < ttl < MAX_TTL_PER_HEARTBEAT * hb:
            raise ConfigError(
                f"lease_ttl_s must be more than heartbeat_interval_s ({hb}) and less than "
                f"{MAX_TTL_PER_HEARTBEAT:g} x heartbeat_interval_s ({MAX_TTL_PER_HEARTBEAT * hb:g}), "
                f"got {ttl}; leave it unset for {DEFAULT_TTL_PER_HEARTBEAT:g} x the interval"
            )
        if self.event_log_retention < 1:
            raise ConfigError(f"event_log_retention must be at least 1, got {self.event_log_retention}")
        if self.watch_queue_events < 1:
            raise ConfigError(f"watch_queue_events must be at least 1, got {self.watch_queue_events}")


def _listen(text: str) -> HostPort:
    try:
        return parse_host_port(text, what="listen address")
    except AddressError as exc:
        raise ValueError(str(exc)) from exc


OPTIONS: Final[tuple[Option[Any], ...]] = (
    Option("listen", _listen, DEFAULT_LISTEN, "HOST:PORT to serve gRPC on; port 0 picks a free one",
           metavar="HOST:PORT"),
    Option("data_dir", Path, DEFAULT_DATA_DIR, "directory for registry.db (created with mode 0700)",
           metavar="DIR"),
    Option("heartbeat_interval_s", positive_float, DEFAULT_HEARTBEAT_INTERVAL_S,
           "how often sidecars must renew their lease", metavar="SECONDS"),
    Option("lease_ttl_s", positive_float, None,
           "lease lifetime without renewal; default 2.5 x heartbeat interval, must be under 3 x",
           metavar="SECONDS"),
    Option("event_log_retention", positive_int, DEFAULT_EVENT_LOG_RETENTION,
           "catalog events kept so that watchers can resume by revision", metavar="EVENTS"),
    Option("watch_queue_events", positive_int, DEFAULT_WATCH_QUEUE_EVENTS,
           "events queued for one slow watcher before it is disconnected", metavar="EVENTS"),
)


def load(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> RegistryConfig:
    """The registry configuration from flags, MESHWARDEN_REGISTRY_* and the TOML file."""
    values = resolve(OPTIONS, args, ENV_PREFIX, environ)
    ttl: float | None = values["lease_ttl_s"]
    return RegistryConfig(
        listen=values["listen"],
        data_dir=values["data_dir"],
        heartbeat_interval_s=values["heartbeat_interval_s"],
        lease_ttl_s=math.nan if ttl is None else ttl,
        event_log_retention=values["event_log_retention"],
        watch_queue_events=values["watch_queue_events"],
    )
