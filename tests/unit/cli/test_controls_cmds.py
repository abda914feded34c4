from __future__ import annotations

import datetime

import pytest

from meshwarden.cli import kill_cmd
from meshwarden.cli.audit_cmd import parse_since
from meshwarden.cli.controls_output import enforcement_line, parse_duration
from meshwarden.cli.main import build_parser, main
from meshwarden.control_scopes import ScopeError
from meshwarden.v1 import controls_pb2


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("30s", 30), ("10m", 600), ("2h", 7200), ("1.5d", 129600)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "--ttl") == seconds


@pytest.mark.parametrize("text", ["", "0", "-5m", "10 minutes", "1w"])
def test_bad_durations_name_the_flag(text: str) -> None:
    with pytest.raises(ScopeError, match="--ttl"):
        parse_duration(text, "--ttl")


def test_since_is_a_duration_back_or_a_time() -> None:
    assert parse_since("2h", 10_000.0) == 2_800.0
    expected = datetime.datetime(2026, 11, 21, 9, 0, tzinfo=datetime.UTC).timestamp()
    assert parse_since("2026-11-21T09:00:00", 0) == expected  # UTC when no zone is given
    assert parse_since("2026-11-21T10:00:00+01:00", 0) == expected
    with pytest.raises(ScopeError, match="--since"):
        parse_since("yesterday", 0)


def test_one_scope_is_taken_from_the_flags() -> None:
    args = build_parser().parse_args(["kill", "--version", "billing@2.4", "--reason", "x"])
    with pytest.raises(ScopeError, match="not a semantic version"):
        kill_cmd._scope(args)
    args = build_parser().parse_args(["kill", "--team", "finance", "--reason", "x"])
    assert kill_cmd._scope(args) == (controls_pb2.SCOPE_KIND_TEAM, "finance")
    with pytest.raises(SystemExit):  # two scopes
        build_parser().parse_args(["kill", "--agent", "a", "--all", "--reason", "x"])


def test_kill_needs_a_scope_and_a_reason_before_it_sends_anything(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kill", "--all", "--operator-token-file", "/nonexistent"]) == 2
    assert main(["kill", "--reason", "x", "--operator-token-file", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "--reason is required" in err and "give one scope" in err


def test_the_enforcement_line() -> None:
    done = controls_pb2.Enforcement(enforced=100, expected=100)
    done.took.FromMilliseconds(38)
    assert enforcement_line(done) == "enforced by 100/100 sidecars in 38 ms"
    partial = controls_pb2.Enforcement(enforced=1, expected=2, not_acknowledged=["kb-1"])
    partial.took.FromSeconds(5)
    assert enforcement_line(partial).startswith("enforced by 1/2 sidecars in 5000 ms; not acknowledged yet: kb-1")
