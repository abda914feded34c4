"""The standard Consul variables, read as the consul CLI reads them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from meshwarden.addresses import HostPort
from meshwarden.config_layers import ConfigError
from meshwarden.sidecar import config
from meshwarden.sidecar.discovery.consul_settings import from_environment


def test_defaults_are_the_local_agent_over_http() -> None:
    settings = from_environment({})
    assert (settings.address, settings.scheme, settings.token, settings.verify) == (
        HostPort("127.0.0.1", 8500),
        "http",
        "",
        True,
    )


def test_address_scheme_ssl_and_tls_files(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    for path in (ca, cert, key):
        path.write_text("pem")
    settings = from_environment(
        {
            "CONSUL_HTTP_ADDR": "https://consul.service:8501",
            "CONSUL_CACERT": str(ca),
            "CONSUL_CLIENT_CERT": str(cert),
            "CONSUL_CLIENT_KEY": str(key),
        }
    )
    assert settings.base_url == "https://consul.service:8501"
    assert settings.ca_file == ca and settings.client_cert == (cert, key)
    assert (
        from_environment({"CONSUL_HTTP_ADDR": "10.0.0.2", "CONSUL_HTTP_SSL": "true"}).base_url
        == "https://10.0.0.2:8501"
    )
    assert from_environment({"CONSUL_HTTP_ADDR": "https://h:1", "CONSUL_HTTP_SSL": "false"}).scheme == "http"
    assert from_environment({"CONSUL_HTTP_SSL_VERIFY": "false"}).verify is False


def test_token_from_the_variable_wins_over_the_file_and_is_never_shown(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert from_environment({"CONSUL_HTTP_TOKEN_FILE": str(token_file)}).token == "from-file"
    settings = from_environment({"CONSUL_HTTP_TOKEN": "from-env", "CONSUL_HTTP_TOKEN_FILE": str(token_file)})
    assert settings.token == "from-env" and "from-env" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONSUL_HTTP_ADDR": "unix:///run/consul.sock"}, "Unix sockets"),
        ({"CONSUL_HTTP_ADDR": "ftp://h:1"}, "http or https"),
        ({"CONSUL_CLIENT_CERT": "/x.pem"}, "set together"),
        ({"CONSUL_CACERT": "/nonexistent/ca.pem"}, "CONSUL_CACERT=/nonexistent/ca.pem: no such file"),
        ({"CONSUL_HTTP_SSL": "maybe"}, "CONSUL_HTTP_SSL: must be true or false"),
        ({"CONSUL_NAMESPACE": "team-a"}, "CONSUL_NAMESPACE is not supported"),
        ({"CONSUL_HTTP_TOKEN_FILE": "/nonexistent/token"}, "cannot read it"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_environment(env)


def args(**flags: str) -> argparse.Namespace:
    return argparse.Namespace(agent="billing", **flags)


def test_discovery_defaults_to_the_registry_and_reads_consul_variables_only_when_asked() -> None:
    assert config.load(args(), {"CONSUL_HTTP_ADDR": "unix:///bad"}).consul is None
    cfg = config.load(args(discovery="consul"), {"CONSUL_HTTP_ADDR": "10.1.2.3:8500", "CONSUL_HTTP_TOKEN": "t"})
    assert cfg.discovery == "consul" and cfg.consul is not None and cfg.consul.base_url == "http://10.1.2.3:8500"
    assert (cfg.consul_check_ttl_s, cfg.consul_deregister_critical_after_s, cfg.consul_wait_s) == (10.0, 60.0, 30.0)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"discovery": "etcd"}, "--discovery: must be one of registry, consul"),
        ({"consul_deregister_critical_after_s": "30"}, "at least 60"),
        ({"consul_wait_s": "900"}, "from 1 to 600"),
    ],
)
def test_bad_discovery_flags_are_refused(flags: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load(args(**flags), {})
