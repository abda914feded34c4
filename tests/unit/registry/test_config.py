"""registry.config: defaults, the three layers, and validation that names the setting."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from meshwarden.addresses import HostPort
from meshwarden.config_layers import ConfigError, add_options
from meshwarden.registry.config import ENV_PREFIX, OPTIONS, RegistryConfig, load, retention_s


def _load(argv: list[str], environ: dict[str, str] | None = None) -> RegistryConfig:
    parser = argparse.ArgumentParser()
    add_options(parser, OPTIONS, ENV_PREFIX)
    return load(parser.parse_args(argv), environ or {})


def test_defaults() -> None:
    config = _load([])
    assert config.listen == HostPort("127.0.0.1", 7400)
    assert config.data_dir == Path("./.meshwarden/registry")
    assert config.heartbeat_interval_s == 2.0
    assert config.lease_ttl_s == 5.0
    assert config.event_log_retention == 10_000
    assert config.watch_coalesce_s == 0.0


def test_lease_ttl_follows_the_heartbeat_interval_unless_set() -> None:
    assert _load(["--heartbeat-interval-s", "0.4"]).lease_ttl_s == pytest.approx(1.0)
    assert _load(["--heartbeat-interval-s", "1", "--lease-ttl-s", "2.9"]).lease_ttl_s == 2.9


def test_flags_override_env_override_file(tmp_path: Path) -> None:
    file = tmp_path / "mesh.toml"
    file.write_text('[registry]\nlisten = "127.0.0.1:1000"\ndata_dir = "/from/file"\nheartbeat_interval_s = 3\n')
    environ = {"MESHWARDEN_REGISTRY_LISTEN": "127.0.0.1:2000", "MESHWARDEN_REGISTRY_CONFIG": str(file)}
    config = _load(["--data-dir", "/from/flag"], environ)
    assert config.listen == HostPort("127.0.0.1", 2000)
    assert config.data_dir == Path("/from/flag")
    assert config.heartbeat_interval_s == 3.0 and config.lease_ttl_s == 7.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--heartbeat-interval-s", "1", "--lease-ttl-s", "3"], "lease_ttl_s must be more than"),
        (["--heartbeat-interval-s", "1", "--lease-ttl-s", "0.5"], "lease_ttl_s must be more than"),
        (["--heartbeat-interval-s", "0"], "--heartbeat-interval-s: must be a number greater than 0"),
        (["--listen", "nowhere"], "--listen: listen address must be HOST:PORT"),
        (["--event-log-retention", "0"], "--event-log-retention: must be a whole number"),
        (["--watch-coalesce-s", "2"], "--watch-coalesce-s: must be a number of seconds from 0 to 1"),
        (["--watch-coalesce-s", "-0.1"], "--watch-coalesce-s: must be a number of seconds from 0 to 1"),
    ],
)
def test_bad_values_name_the_setting(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(argv)


def test_unknown_file_keys_are_errors(tmp_path: Path) -> None:
    file = tmp_path / "mesh.toml"
    file.write_text("[registry]\nlisten_port = 7400\n")
    with pytest.raises(ConfigError, match="unknown key.*listen_port"):
        _load(["--config", str(file)])


def test_the_dataclass_derives_and_validates_when_built_directly() -> None:
    assert RegistryConfig(heartbeat_interval_s=0.3).lease_ttl_s == pytest.approx(0.75)
    with pytest.raises(ConfigError, match="lease_ttl_s"):
        RegistryConfig(heartbeat_interval_s=1.0, lease_ttl_s=3.5)


def test_identity_defaults() -> None:
    config = _load([])
    assert config.trust_domain == "meshwarden.local"
    assert config.svid_ttl_s == 3600.0
    assert config.open_enrollment == "auto" and config.open_enrollment_enabled
    assert config.mtls_address == HostPort("127.0.0.1", 7401)  # the port after --listen's
    assert config.mtls_advertise == ""


def test_the_mtls_port_follows_listen_unless_set() -> None:
    assert _load(["--listen", "127.0.0.1:0"]).mtls_address == HostPort("127.0.0.1", 0)
    assert _load(["--listen", "10.0.0.5:9000"]).mtls_address == HostPort("10.0.0.5", 9001)
    assert _load(["--mtls-listen", "127.0.0.1:5"]).mtls_address == HostPort("127.0.0.1", 5)
    with pytest.raises(ConfigError, match="port 65535.*set mtls_listen"):
        _load(["--listen", "127.0.0.1:65535"])


def test_open_enrolment_auto_is_on_only_on_loopback() -> None:
    assert not _load(["--listen", "0.0.0.0:0"]).open_enrollment_enabled
    assert not _load(["--mtls-listen", "0.0.0.0:0"]).open_enrollment_enabled
    assert _load(["--open-enrollment", "on"]).open_enrollment_enabled
    assert not _load(["--open-enrollment", "off"]).open_enrollment_enabled


def test_open_enrolment_on_beyond_loopback_is_refused_saying_why() -> None:
    with pytest.raises(
        ConfigError, match="open_enrollment=on needs the registry to listen on loopback only.*join tokens"
    ):
        _load(["--listen", "0.0.0.0:0", "--open-enrollment", "on"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--trust-domain", "Mesh_Local"], "trust_domain: trust domain must be a lower-case DNS name"),
        (["--svid-ttl-s", "9"], "svid_ttl_s must be from 10 to 2592000 seconds"),
        (["--svid-ttl-s", "9999999"], "svid_ttl_s must be from 10"),
        (["--open-enrollment", "maybe"], "--open-enrollment: must be one of auto, on, off"),
        (["--mtls-advertise", "nowhere"], "mtls_advertise must be HOST:PORT"),
    ],
)
def test_bad_identity_values_name_the_setting(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(argv)


def test_identity_settings_come_from_the_environment_too() -> None:
    config = _load(
        [],
        {
            "MESHWARDEN_REGISTRY_TRUST_DOMAIN": "prod.example.com",
            "MESHWARDEN_REGISTRY_SVID_TTL_S": "600",
            "MESHWARDEN_REGISTRY_OPEN_ENROLLMENT": "off",
        },
    )
    assert (config.trust_domain, config.svid_ttl_s, config.open_enrollment) == ("prod.example.com", 600.0, "off")


def test_the_console_is_off_by_default_and_beyond_loopback_only_with_tls(tmp_path: Path) -> None:
    assert _load([]).console_listen is None
    on = _load(["--console-listen", "127.0.0.1:0", "--console-session-idle-s", "60"])
    assert on.console_listen == HostPort("127.0.0.1", 0) and on.console_session_idle_s == 60 and not on.console_tls
    with pytest.raises(ConfigError, match="console_listen is 0.0.0.0:7443, beyond loopback, without TLS"):
        _load(["--console-listen", "0.0.0.0:7443"])
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    served = _load(["--console-listen", "0.0.0.0:7443", "--console-tls-cert", str(cert), "--console-tls-key", str(key)])
    assert served.console_tls
    with pytest.raises(ConfigError, match="console_tls_cert and console_tls_key go together"):
        _load(["--console-listen", "127.0.0.1:0", "--console-tls-cert", str(cert)])
    with pytest.raises(ConfigError, match="console_session_idle_s must be from 1"):
        _load(["--console-session-idle-s", "0.5"])


def test_receipts_retention_reads_durations_and_refuses_others() -> None:
    assert [retention_s(t) for t in ("90d", "12h", "30m", "45s", "3600", "0")] == [
        90 * 86400.0,
        12 * 3600.0,
        1800.0,
        45.0,
        3600.0,
        0.0,
    ]
    for bad in ("", "-1d", "1w", "1.5d", "ninety days"):
        with pytest.raises(ValueError, match="duration"):
            retention_s(bad)


def test_the_store_is_sqlite_unless_a_postgresql_url_or_variable_names_one() -> None:
    assert _load([]).store == "" and _load(["--store", "sqlite"]).store == ""
    url = "postgresql://meshwarden@db.internal:5432/meshwarden"
    assert _load(["--store", url]).store == url
    assert _load([], {"MESHWARDEN_STORE": url}).store == url
    assert _load([], {"MESHWARDEN_REGISTRY_STORE": url, "MESHWARDEN_STORE": "sqlite"}).store == url
    assert _load(["--store", "sqlite"], {"MESHWARDEN_STORE": url}).store == ""  # a flag wins
    assert _load(["--store", "postgresql"]).store == "postgresql://"  # the rest from PGHOST, PGUSER, ...


def test_a_store_that_is_neither_is_refused_without_echoing_credentials() -> None:
    with pytest.raises(ConfigError) as info:
        _load(["--store", "mysql://root:hunter2@db/x"])
    assert "--store" in str(info.value) and "postgresql://USER@HOST:PORT/DATABASE" in str(info.value)
    assert "hunter2" not in str(info.value)
