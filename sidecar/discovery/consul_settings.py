"""How to reach the local Consul agent, from the variables every Consul tool reads.

Platform teams already set CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN and the TLS variables for the
`consul` CLI and their other tools; the sidecar reads the same ones, with the same meaning,
instead of inventing MESHWARDEN_* copies of them. Only sidecar/config.py calls this, with
the process environment, so no other module reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from meshwarden.addresses import AddressError, HostPort, parse_host_port
from meshwarden.config_layers import ConfigError, boolean

DEFAULT_ADDRESS = "127.0.0.1:8500"


@dataclass(frozen=True, kw_only=True)
class ConsulSettings:
    address: HostPort
    scheme: str  # "http" or "https"
    token: str = field(repr=False)  # never logged
    ca_file: Path | None  # CONSUL_CACERT: the CA that signed the agent's HTTPS certificate
    client_cert: tuple[Path, Path] | None  # CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY
    verify: bool  # False only when CONSUL_HTTP_SSL_VERIFY=false

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.address}"


def from_environment(env: Mapping[str, str]) -> ConsulSettings:
    """The settings the Consul CLI would use with `env`; raises ConfigError naming the variable."""
    raw_address = env.get("CONSUL_HTTP_ADDR", "").strip() or DEFAULT_ADDRESS
    ssl = _boolean(env, "CONSUL_HTTP_SSL") if "CONSUL_HTTP_SSL" in env else None
    scheme, address = _split_address(raw_address, ssl)
    verify = _boolean(env, "CONSUL_HTTP_SSL_VERIFY") if "CONSUL_HTTP_SSL_VERIFY" in env else True
    cert, key = env.get("CONSUL_CLIENT_CERT", ""), env.get("CONSUL_CLIENT_KEY", "")
    if bool(cert) != bool(key):
        raise ConfigError(
            "CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY must be set together (a client certificate and its key)"
        )
    for name in ("CONSUL_CACERT", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY"):
        if env.get(name) and not Path(env[name]).is_file():
            raise ConfigError(f"{name}={env[name]}: no such file")
    if env.get("CONSUL_CAPATH"):
        raise ConfigError("CONSUL_CAPATH is not supported; name one PEM bundle with CONSUL_CACERT instead")
    if env.get("CONSUL_NAMESPACE"):
        # py-consul has no namespace parameter on the endpoints the sidecar uses; registering in
        # the default namespace while the operator asked for another would be worse than refusing.
        raise ConfigError(
            "CONSUL_NAMESPACE is not supported (Consul Enterprise namespaces); unset it, or give the sidecar's "
            "token a default namespace"
        )
    return ConsulSettings(
        address=address,
        scheme=scheme,
        token=_token(env),
        ca_file=Path(env["CONSUL_CACERT"]) if env.get("CONSUL_CACERT") else None,
        client_cert=(Path(cert), Path(key)) if cert else None,
        verify=verify,
    )


def _split_address(raw: str, ssl: bool | None) -> tuple[str, HostPort]:
    """CONSUL_HTTP_SSL, when set, wins over the scheme in the address (as in the Consul CLI)."""
    if raw.startswith("unix://"):
        raise ConfigError(f"CONSUL_HTTP_ADDR={raw}: Unix sockets are not supported; give HOST:PORT")
    scheme = "http"
    if "://" in raw:
        parts = urlsplit(raw)
        if parts.scheme not in {"http", "https"}:
            raise ConfigError(f"CONSUL_HTTP_ADDR={raw}: the scheme must be http or https")
        scheme, raw = parts.scheme, parts.netloc
    if ssl is not None:
        scheme = "https" if ssl else "http"
    if raw.rpartition(":")[2].isdigit() or raw.startswith("["):
        hostport = raw
    else:  # the Consul CLI's default port when none is given
        hostport = f"{raw}:{8501 if scheme == 'https' else 8500}"
    try:
        return scheme, parse_host_port(hostport, what="CONSUL_HTTP_ADDR")
    except AddressError as exc:
        raise ConfigError(str(exc)) from exc


def _token(env: Mapping[str, str]) -> str:
    """CONSUL_HTTP_TOKEN wins over CONSUL_HTTP_TOKEN_FILE, as in the Consul CLI (and py-consul
    reads CONSUL_HTTP_TOKEN itself, so any other order would not hold)."""
    if env.get("CONSUL_HTTP_TOKEN"):
        return env["CONSUL_HTTP_TOKEN"].strip()
    path = env.get("CONSUL_HTTP_TOKEN_FILE", "")
    if not path:
        return ""
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"CONSUL_HTTP_TOKEN_FILE={path}: cannot read it: {exc.strerror}") from exc


def _boolean(env: Mapping[str, str], name: str) -> bool:
    try:
        return boolean(env[name])
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from exc
