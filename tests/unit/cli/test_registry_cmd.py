"""meshwarden.cli.registry_cmd: `registry serve` takes the registry's options as flags."""

from __future__ import annotations

import argparse
from pathlib import Path

from meshwarden.addresses import HostPort
from meshwarden.cli import registry_cmd
from meshwarden.registry.config import load


def test_serve_flags_resolve_to_a_registry_config(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    registry_cmd.add_to(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["registry", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path), "--heartbeat-interval-s", "0.3"]
    )
    config = load(args, {})
    assert config.listen == HostPort("127.0.0.1", 0)
    assert config.data_dir == tmp_path
    assert config.heartbeat_interval_s == 0.3 and abs(config.lease_ttl_s - 0.75) < 1e-9
    assert callable(args.run)
