"""meshwarden.cli.identity_cmd: flags, durations and the JSON it prints."""

from __future__ import annotations

import argparse

import pytest

from meshwarden.cli import identity_cmd
from meshwarden.v1 import identity_pb2


def test_durations() -> None:
    assert [identity_cmd.duration_s(t) for t in ("90", "90s", "30m", "1h", "7d")] == [90, 90, 1800, 3600, 604800]
    with pytest.raises(argparse.ArgumentTypeError, match="90s, 30m, 1h or 7d"):
        identity_cmd.duration_s("1 hour")


def test_token_create_flags() -> None:
    parser = argparse.ArgumentParser()
    identity_cmd.add_to(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["identity", "token", "create", "--agent", "billing", "--ttl", "2h", "--output", "json"])
    assert (args.agent, args.ttl, args.output, args.registry) == ("billing", 7200, "json", None)
    assert callable(args.run)
    assert parser.parse_args(["identity", "token", "create", "--agent", "x"]).ttl == 3600


def test_token_json_has_the_documented_keys() -> None:
    token = identity_pb2.JoinToken(token="mwj1.x", agent="billing", spiffe_id="spiffe://mesh.test/agent/billing")
    token.expires_at.FromSeconds(1_700_000_000)
    assert identity_cmd.token_json(token) == {
        "token": "mwj1.x",
        "agent": "billing",
        "spiffe_id": "spiffe://mesh.test/agent/billing",
        "expires_at": "2023-11-14T22:13:20Z",
    }
