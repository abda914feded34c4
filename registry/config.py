"""The registry's settings, declared once and resolved from flags > MESHWARDEN_REGISTRY_* > TOML.

Validated here, at load time, so that a bad value stops the registry before it binds a port,
with a message naming the setting, the rule and the value.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast

from meshwarden.addresses import AddressError, HostPort, parse_host_port, parse_optional_host_port
from meshwarden.config_layers import ConfigError, Option, boolean, choice, positive_float, positive_int, resolve, text
from meshwarden.identity.spiffe_ids import DEFAULT_TRUST_DOMAIN, IdentityError, check_trust_domain

ENV_PREFIX: Final = "REGISTRY"
DEFAULT_LISTEN: Final = HostPort("127.0.0.1", 7400)
DEFAULT_ADMIN_LISTEN: Final = HostPort("127.0.0.1", 9900)
DEFAULT_DATA_DIR: Final = Path("./.meshwarden/registry")
DEFAULT_HEARTBEAT_INTERVAL_S: Final = 2.0
# A lease survives two missed heartbeats (2.5 intervals) but not three: a sidecar that stopped
# is gone from the catalog within three intervals, and one late heartbeat is forgiven.
DEFAULT_TTL_PER_HEARTBEAT: Final = 2.5
MAX_TTL_PER_HEARTBEAT: Final = 3.0
DEFAULT_EVENT_LOG_RETENTION: Final = 10_000
DEFAULT_WATCH_QUEUE_EVENTS: Final = 1024
# Catalog changes wait at least this long for others to share one message per watcher; the
# window grows with the watchers anyway (registry.watch_hub.FANOUT_MESSAGES_PER_S).
DEFAULT_WATCH_COALESCE_S: Final = 0.0
MAX_WATCH_COALESCE_S: Final = 1.0
DEFAULT_SVID_TTL_S: Final = 3600.0
MIN_SVID_TTL_S: Final = 10.0
MAX_SVID_TTL_S: Final = 30 * 24 * 3600.0
DEFAULT_BUDGET_SLICE_TTL_S: Final = 10.0
DEFAULT_BUDGET_SYNC_S: Final = 0.5
# A console login ends after this long without a request from its browser (a page open on a
# live view keeps it alive), and after MAX_CONSOLE_SESSION_S whatever happens.
DEFAULT_CONSOLE_SESSION_IDLE_S: Final = 1800.0
MAX_CONSOLE_SESSION_S: Final = 12 * 3600.0

OpenEnrollment = Literal["auto", "on", "off"]
OPEN_ENROLLMENT_CHOICES: Final = ("auto", "on", "off")


_RETENTION: Final = re.compile(r"(\d{1,6})([smhd]?)")
_RETENTION_UNITS: Final = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def retention_s(value: str) -> float:
    """'90d', '12h', '30m', '3600' (seconds) or '0' (keep forever) -> seconds."""
    match = _RETENTION.fullmatch(str(value).strip())
    if match is None:
        raise ValueError(f"{value!r} is not a duration such as 90d, 12h or 30m (0 keeps receipts forever)")
    return int(match.group(1)) * _RETENTION_UNITS[match.group(2)]


def _coalesce_s(text: str) -> float:
    value = float(text)
    if not 0 <= value <= MAX_WATCH_COALESCE_S:
        raise ValueError(f"must be a number of seconds from 0 to {MAX_WATCH_COALESCE_S:g}, got {text}")
    return value


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
    # Receipts older than this are deleted (a hashed checkpoint keeps each cut chain
    # verifiable); 0 keeps them forever.
    receipts_retention_s: float = 0.0
    # Messages queued for one watcher before it is cut off (it resumes by revision).
    watch_queue_events: int = DEFAULT_WATCH_QUEUE_EVENTS
    # How long a catalog change waits at least for others to go to the watchers in one message.
    watch_coalesce_s: float = DEFAULT_WATCH_COALESCE_S
    # Where SVID holders call the registry over mTLS. gRPC Python cannot ask for a client
    # certificate without requiring one, so `listen` (TLS, no client certificate: enrolment,
    # trust bundle, operators, health) and this port (mTLS required) are separate. Left unset,
    # it is listen's host with the next port, or port 0 when listen's port is 0.
    mtls_listen: HostPort | None = None
    # "HOST:PORT" that clients should dial for the mTLS port, when the bound address is not
    # it (a wildcard listen, NAT); told to clients by GetTrustBundle and Enroll.
    mtls_advertise: str = ""
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    # Lifetime of the SVIDs the embedded issuer signs (the registry's own included).
    svid_ttl_s: float = DEFAULT_SVID_TTL_S
    # "auto": enrolment without a join token only while the registry listens on loopback.
    open_enrollment: OpenEnrollment = "auto"
    # The admin HTTP port (/metrics, /healthz, /readyz). `meshwarden registry serve` defaults
    # to DEFAULT_ADMIN_LISTEN; a registry built in code (tests) has none unless asked.
    admin_listen: HostPort | None = None
    # Directory of trusted bundle public keys (`<key-id>.pub`, as the sidecars have): with it,
    # a pushed bundle is verified before it is stored. Without it the registry refuses to start
    # unless allow_unverified_bundles: it cannot tell a bundle every sidecar refuses from a good
    # one, and would serve it to new sidecars in place of the last good revision.
    bundle_keys: Path | None = None
    allow_unverified_bundles: bool = False
    # A budget slice lapses this long after its holder's last report (a sidecar killed -9
    # gives its slices back within it); holders report every budget_sync_s.
    budget_slice_ttl_s: float = DEFAULT_BUDGET_SLICE_TTL_S
    budget_sync_s: float = DEFAULT_BUDGET_SYNC_S
    # "" : SQLite in data_dir (one registry process). A postgresql:// URL: PostgreSQL, shared by
    # every replica; what the URL leaves out comes from PGHOST, PGUSER, PGPASSWORD, ... (libpq's).
    store: str = ""
    # The web console (registry.console): off unless given; beyond loopback only with TLS
    # (a certificate and key that browsers trust, PEM files).
    console_listen: HostPort | None = None
    console_tls_cert: Path | None = None
    console_tls_key: Path | None = None
    console_session_idle_s: float = DEFAULT_CONSOLE_SESSION_IDLE_S

    def __post_init__(self) -> None:
        self._check_identity()
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
        if not 0 <= self.watch_coalesce_s <= MAX_WATCH_COALESCE_S:
            raise ConfigError(
                f"watch_coalesce_s must be from 0 to {MAX_WATCH_COALESCE_S:g} seconds, got {self.watch_coalesce_s:g}"
            )
        if not 0 < 4 * self.budget_sync_s <= self.budget_slice_ttl_s <= 3600:
            raise ConfigError(
                f"budget_slice_ttl_s must be at least 4 x budget_sync_s ({self.budget_sync_s:g}) and at most 3600, "
                f"got {self.budget_slice_ttl_s:g}: a slice must survive a few missed reports"
            )
        self._check_console()

    @property
    def console_tls(self) -> bool:
        return self.console_tls_cert is not None

    def _check_console(self) -> None:
        if (self.console_tls_cert is None) != (self.console_tls_key is None):
            raise ConfigError("console_tls_cert and console_tls_key go together: give both PEM files, or neither")
        if self.console_listen is not None and not self.console_tls and not self.console_listen.is_loopback:
            raise ConfigError(
                f"console_listen is {self.console_listen}, beyond loopback, without TLS: operator tokens and "
                "session cookies would cross the network in clear text; give console_tls_cert and console_tls_key, "
                "or listen on 127.0.0.1 (and reach it through an SSH tunnel)"
            )
        if not 1 <= self.console_session_idle_s <= MAX_CONSOLE_SESSION_S:
            raise ConfigError(
                f"console_session_idle_s must be from 1 to {MAX_CONSOLE_SESSION_S:.0f} seconds, "
                f"got {self.console_session_idle_s:g}"
            )

    @property
    def mtls_address(self) -> HostPort:
        """The mTLS listen address, derived from `listen` when it was not set."""
        if self.mtls_listen is not None:
            return self.mtls_listen
        return HostPort(self.listen.host, self.listen.port + 1 if self.listen.port else 0)

    @property
    def only_on_loopback(self) -> bool:
        return self.listen.is_loopback and self.mtls_address.is_loopback

    @property
    def open_enrollment_enabled(self) -> bool:
        """Whether a sidecar may enrol without a join token ("auto": only on loopback)."""
        return self.open_enrollment == "on" or (self.open_enrollment == "auto" and self.only_on_loopback)

    def _check_identity(self) -> None:
        try:
            check_trust_domain(self.trust_domain)
        except IdentityError as exc:
            raise ConfigError(f"trust_domain: {exc}") from exc
        if not MIN_SVID_TTL_S <= self.svid_ttl_s <= MAX_SVID_TTL_S:
            raise ConfigError(
                f"svid_ttl_s must be from {MIN_SVID_TTL_S:.0f} to {MAX_SVID_TTL_S:.0f} seconds (30 days), "
                f"got {self.svid_ttl_s:g}; SVIDs are meant to be short-lived (default {DEFAULT_SVID_TTL_S:g})"
            )
        if self.open_enrollment not in OPEN_ENROLLMENT_CHOICES:
            raise ConfigError(f"open_enrollment must be one of auto, on, off, got {self.open_enrollment!r}")
        if self.listen.port == 65535 and self.mtls_listen is None:
            raise ConfigError("listen uses port 65535, so the mTLS port cannot be the next one; set mtls_listen")
        if self.open_enrollment == "on" and not self.only_on_loopback:
            raise ConfigError(
                f"open_enrollment=on needs the registry to listen on loopback only, but it listens on "
                f"{self.listen} and {self.mtls_address}: beyond loopback anybody who reaches the port could "
                "enrol as any agent. Use join tokens (meshwarden identity token create --agent NAME) "
                "with open_enrollment auto or off"
            )
        if self.mtls_advertise:
            try:
                parse_host_port(self.mtls_advertise, what="mtls_advertise")
            except AddressError as exc:
                raise ConfigError(str(exc)) from exc


def parse_store(value: str) -> str:
    """ "" for SQLite; a PostgreSQL URL ("postgresql" alone: everything from the PG* variables)."""
    value = value.strip()
    if value in ("", "sqlite"):
        return ""
    if value in ("postgresql", "postgres"):
        return "postgresql://"
    if value.startswith(("postgresql://", "postgres://")):
        return value
    raise ValueError(
        f"must be sqlite, postgresql (settings from PGHOST, PGUSER, ...) or a postgresql://USER@HOST:PORT/DATABASE "
        f"URL, got {value.split('@')[-1]!r}"
    )


def _listen(text: str) -> HostPort:
    try:
        return parse_host_port(text, what="listen address")
    except AddressError as exc:
        raise ValueError(str(exc)) from exc


STORE_OPTION: Final[Option[str]] = Option(
    "store",
    parse_store,
    "",
    "where the registry keeps its state: sqlite (default, registry.db in --data-dir, one process) or "
    "postgresql://USER@HOST:PORT/DATABASE, shared by several replicas (also MESHWARDEN_STORE; what the URL "
    "leaves out comes from PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)",
    metavar="URL",
)

OPTIONS: Final[tuple[Option[Any], ...]] = (
    STORE_OPTION,
    Option(
        "listen", _listen, DEFAULT_LISTEN, "HOST:PORT to serve gRPC on; port 0 picks a free one", metavar="HOST:PORT"
    ),
    Option(
        "data_dir",
        Path,
        DEFAULT_DATA_DIR,
        "directory for registry.db, the CA (ca/) and operator.token (mode 0700)",
        metavar="DIR",
    ),
    Option(
        "heartbeat_interval_s",
        positive_float,
        DEFAULT_HEARTBEAT_INTERVAL_S,
        "how often sidecars must renew their lease",
        metavar="SECONDS",
    ),
    Option(
        "lease_ttl_s",
        positive_float,
        None,
        "lease lifetime without renewal; default 2.5 x heartbeat interval, must be under 3 x",
        metavar="SECONDS",
    ),
    Option(
        "event_log_retention",
        positive_int,
        DEFAULT_EVENT_LOG_RETENTION,
        "catalog events kept so that watchers can resume by revision",
        metavar="EVENTS",
    ),
    Option(
        "receipts_retention",
        retention_s,
        0.0,
        "delete receipts older than this (90d, 12h; 0 keeps them): `receipts verify` checks each cut chain "
        "from a hashed checkpoint; session and cost totals stay",
        metavar="DURATION",
    ),
    Option(
        "watch_queue_events",
        positive_int,
        DEFAULT_WATCH_QUEUE_EVENTS,
        "messages queued for one slow watcher before it is disconnected (catalog changes that piled up share one)",
        metavar="EVENTS",
    ),
    Option(
        "watch_coalesce_s",
        _coalesce_s,
        DEFAULT_WATCH_COALESCE_S,
        "how long a catalog change waits at least for others to reach each watcher in one message (the "
        f"window grows with the watchers: 1,000 watchers, 0.2 s); at most {MAX_WATCH_COALESCE_S:g}",
        metavar="SECONDS",
    ),
    Option(
        "mtls_listen",
        _listen,
        None,
        "HOST:PORT where SVID holders call the registry over mTLS; default: --listen's host and next port "
        "(0 when --listen's port is 0)",
        metavar="HOST:PORT",
    ),
    Option(
        "mtls_advertise",
        text,
        "",
        "HOST:PORT clients should dial for the mTLS port when the bound address is not it (wildcard, NAT)",
        metavar="HOST:PORT",
    ),
    Option(
        "admin_listen",
        lambda value: parse_optional_host_port(value, what="admin listen address"),
        DEFAULT_ADMIN_LISTEN,
        "admin HTTP port: /metrics (Prometheus), /healthz, /readyz; port 0 picks one; off disables",
        metavar="HOST:PORT|off",
    ),
    Option("trust_domain", text, DEFAULT_TRUST_DOMAIN, "SPIFFE trust domain of the mesh", metavar="DOMAIN"),
    Option(
        "svid_ttl_s",
        positive_float,
        DEFAULT_SVID_TTL_S,
        "lifetime of the SVIDs the embedded issuer signs (10 s to 30 days)",
        metavar="SECONDS",
    ),
    Option(
        "open_enrollment",
        choice(*OPEN_ENROLLMENT_CHOICES),
        "auto",
        "enrolment without a join token: auto = only while listening on loopback; on is refused beyond loopback",
        metavar="auto|on|off",
    ),
    Option(
        "bundle_keys",
        Path,
        None,
        "directory of trusted bundle public keys (<key-id>.pub, the sidecars' --bundle-keys): a pushed bundle "
        "that does not verify against them is refused instead of becoming the latest revision; required "
        "unless --allow-unverified-bundles true",
        metavar="DIR",
    ),
    Option(
        "allow_unverified_bundles",
        boolean,
        False,
        "development only: serve without --bundle-keys, storing pushed bundles unverified (a bundle no sidecar "
        "accepts can then become the latest revision, and new sidecars get it instead of the last good one)",
        metavar="true|false",
    ),
    Option(
        "budget_slice_ttl_s",
        positive_float,
        DEFAULT_BUDGET_SLICE_TTL_S,
        "a budget slice whose sidecar stopped reporting is back in its budget after this long",
        metavar="SECONDS",
    ),
    Option(
        "budget_sync_s",
        positive_float,
        DEFAULT_BUDGET_SYNC_S,
        "how often sidecars report what their budget slices spent (and answer recalls)",
        metavar="SECONDS",
    ),
    Option(
        "console_listen",
        lambda value: parse_optional_host_port(value, what="console listen address"),
        None,
        "HOST:PORT for the web console (log in with the operator or viewer token); off by default; beyond "
        "loopback only with --console-tls-cert and --console-tls-key",
        metavar="HOST:PORT|off",
    ),
    Option("console_tls_cert", Path, None, "PEM certificate (chain) the console serves HTTPS with", metavar="FILE"),
    Option("console_tls_key", Path, None, "PEM private key of --console-tls-cert", metavar="FILE"),
    Option(
        "console_session_idle_s",
        positive_float,
        DEFAULT_CONSOLE_SESSION_IDLE_S,
        "a console login ends after this long without a request from its browser (and after 12 h in any case)",
        metavar="SECONDS",
    ),
)


def load(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> RegistryConfig:
    """The registry configuration from flags, MESHWARDEN_REGISTRY_* and the TOML file."""
    values = resolve(OPTIONS, args, ENV_PREFIX, with_store_alias(environ))
    ttl: float | None = values["lease_ttl_s"]
    return RegistryConfig(
        listen=values["listen"],
        data_dir=values["data_dir"],
        heartbeat_interval_s=values["heartbeat_interval_s"],
        lease_ttl_s=math.nan if ttl is None else ttl,
        event_log_retention=values["event_log_retention"],
        receipts_retention_s=values["receipts_retention"],
        watch_queue_events=values["watch_queue_events"],
        watch_coalesce_s=values["watch_coalesce_s"],
        mtls_listen=values["mtls_listen"],
        mtls_advertise=values["mtls_advertise"],
        trust_domain=values["trust_domain"],
        svid_ttl_s=values["svid_ttl_s"],
        open_enrollment=cast(OpenEnrollment, values["open_enrollment"]),
        admin_listen=values["admin_listen"],
        bundle_keys=values["bundle_keys"],
        allow_unverified_bundles=values["allow_unverified_bundles"],
        budget_slice_ttl_s=values["budget_slice_ttl_s"],
        budget_sync_s=values["budget_sync_s"],
        store=values["store"],
        console_listen=values["console_listen"],
        console_tls_cert=values["console_tls_cert"],
        console_tls_key=values["console_tls_key"],
        console_session_idle_s=values["console_session_idle_s"],
    )


def with_store_alias(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    """The environment with MESHWARDEN_STORE standing for MESHWARDEN_REGISTRY_STORE when only it is set
    (the name the CLI's other commands and the deployment files share)."""
    env = os.environ if environ is None else environ
    own = STORE_OPTION.env_name(ENV_PREFIX)
    if "MESHWARDEN_STORE" in env and own not in env:
        return {**env, own: env["MESHWARDEN_STORE"]}
    return env
