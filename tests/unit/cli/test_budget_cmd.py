from __future__ import annotations

import pytest

from meshwarden.budget_scopes import BudgetError
from meshwarden.cli import budget_cmd
from meshwarden.cli.main import build_parser, main
from meshwarden.config_layers import ConfigError
from meshwarden.registry.config import RegistryConfig
from meshwarden.v1 import budgets_pb2


def test_the_flags_make_the_request() -> None:
    args = build_parser().parse_args(
        ["budget", "set", "--workflow", "wf-1", "--per", "day", "--limit-usd", "$12.50", "--soft-usd", "10"]
    )
    request = budget_cmd.set_request(args)
    assert (request.scope, request.scope_value, request.period) == (
        budgets_pb2.BUDGET_SCOPE_WORKFLOW,
        "wf-1",
        budgets_pb2.BUDGET_PERIOD_DAY,
    )
    assert (request.limit_micro_usd, request.soft_limit_micro_usd) == (12_500_000, 10_000_000)
    session = budget_cmd.set_request(
        build_parser().parse_args(["budget", "set", "--session", "--per", "total", "--limit-usd", "2"])
    )
    assert (session.scope, session.scope_value) == (budgets_pb2.BUDGET_SCOPE_SESSION, "")
    with pytest.raises(BudgetError, match="--agent"):
        budget_cmd.set_request(
            build_parser().parse_args(["budget", "set", "--agent", "Bad Name", "--per", "day", "--limit-usd", "1"])
        )


def test_bad_budgets_are_refused_before_anything_is_sent(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["budget", "set", "--team", "t", "--per", "day", "--limit-usd", "0", "--operator-token-file", "/x"]) == 2
    )
    assert main(["budget", "set", "--team", "t", "--per", "day", "--limit-usd", "1.0000001"]) == 2
    err = capsys.readouterr().err
    assert "--limit-usd must be more than $0" in err and "more than 6 decimals" in err
    with pytest.raises(SystemExit):  # one scope only
        build_parser().parse_args(["budget", "set", "--team", "t", "--session", "--per", "day", "--limit-usd", "1"])


def test_the_table() -> None:
    state = budgets_pb2.BudgetState(
        budget=budgets_pb2.Budget(
            id="bg-1", scope=budgets_pb2.BUDGET_SCOPE_SESSION, period=budgets_pb2.BUDGET_PERIOD_TOTAL,
            limit_micro_usd=2_000_000, soft_limit_micro_usd=1_000_000,
        ),
        subject="s-9", spent_micro_usd=1_250_000, reserved_micro_usd=123, remaining_micro_usd=749_877,
        soft_limit_crossed=True,
    )  # fmt: skip
    header, row = budget_cmd.table([state]).splitlines()
    assert row.split() == ["bg-1", "any", "one", "session", "s-9", "total", "-", "$2.00", "$1.25", "$0.000123",
                           "$0.749877", "$1.00", "crossed"]  # fmt: skip


def test_slices_must_outlive_a_few_missed_reports() -> None:
    with pytest.raises(ConfigError, match="budget_slice_ttl_s"):
        RegistryConfig(budget_slice_ttl_s=1.0, budget_sync_s=0.5, allow_unverified_bundles=True)
