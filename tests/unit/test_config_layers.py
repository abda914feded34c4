from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from meshwarden.config_layers import ConfigError
from meshwarden.sidecar import config


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    from meshwarden.config_layers import add_options

    add_options(parser, config.OPTIONS, config.ENV_PREFIX)
    return parser.parse_args(list(argv))


def test_flag_beats_env_beats_file(tmp_path: Path) -> None:
    file = tmp_path / "mw.toml"
    file.write_text('[sidecar]\nagent = "from-file"\nmax_payload_bytes = 100\ndefault_timeout_s = 7\n')
    env = {"MESHWARDEN_SIDECAR_MAX_PAYLOAD_BYTES": "200", "MESHWARDEN_SIDECAR_AGENT": "from-env"}
    cfg = config.load(parse("--config", str(file), "--agent", "from-flag"), env)
    assert (cfg.agent, cfg.max_payload_bytes, cfg.default_timeout_s) == ("from-flag", 200, 7.0)


def test_defaults_are_safe() -> None:
    cfg = config.load(parse("--agent", "a"), {})
    assert cfg.listen.is_loopback and cfg.peer_listen.is_loopback
    assert cfg.max_payload_bytes == 4 * 1024 * 1024
    assert cfg.instance_id == ""  # made at start and kept in the data dir (sidecar/instance_identity.py)


def test_unknown_file_key_is_an_error(tmp_path: Path) -> None:
    file = tmp_path / "mw.toml"
    file.write_text('[sidecar]\nagent = "a"\nmax_payload = 1\n')
    with pytest.raises(ConfigError, match="unknown key.*max_payload"):
        config.load(parse("--config", str(file)), {})


def test_bad_value_names_its_source() -> None:
    with pytest.raises(ConfigError, match="MESHWARDEN_SIDECAR_MAX_PAYLOAD_BYTES.*whole number"):
        config.load(parse("--agent", "a"), {"MESHWARDEN_SIDECAR_MAX_PAYLOAD_BYTES": "-1"})


def test_missing_agent_is_an_error() -> None:
    with pytest.raises(ConfigError, match="--agent is required"):
        config.load(parse(), {})


def test_wildcard_peer_listen_needs_an_advertised_address() -> None:
    with pytest.raises(ConfigError, match="--peer-advertise"):
        config.load(parse("--agent", "a", "--peer-listen", "0.0.0.0:7411"), {})


@pytest.mark.parametrize("name", ["under_score", "-lead", "trail-", "UPPER", "a" * 64, ""])
def test_agent_names_must_be_dns_labels(name: str) -> None:
    with pytest.raises(ConfigError, match="1-63 characters"):
        config.load(parse(), {"MESHWARDEN_SIDECAR_AGENT": name})


def test_keepalive_below_the_servers_ping_floor_is_refused() -> None:
    with pytest.raises(ConfigError, match="--keepalive-s.*from 1 up"):
        config.load(parse("--agent", "a", "--keepalive-s", "0.5"), {})
    cfg = config.load(parse("--agent", "a", "--connect-timeout-s", "2"), {"MESHWARDEN_SIDECAR_KEEPALIVE_S": "3"})
    assert (cfg.keepalive_s, cfg.connect_timeout_s) == (3.0, 2.0)
