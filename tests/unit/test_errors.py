from __future__ import annotations

import grpc
import pytest

from meshwarden import errors
from meshwarden.usage import Usage


@pytest.mark.parametrize(
    "err",
    [
        errors.UnknownCapability("x.y"),
        errors.PayloadTooLarge(10, 5, "x.y"),
        errors.SchemaDrift("x.y", "sha256:a", ["sha256:b"]),
        errors.NoHealthyInstance("x.y", "^2", "none"),
        errors.BadPayload("bad"),
        errors.DeadlineExceeded("late"),
    ],
)
def test_an_error_sent_over_the_wire_comes_back_as_the_same_class(err: errors.MeshError) -> None:
    back = errors.MeshError.from_wire(err.kind, err.status_code(), err.message)
    assert type(back) is type(err)
    assert back.message == err.message and back.status_code() == err.status_code()


def test_agent_failure_keeps_the_agent_status() -> None:
    back = errors.MeshError.from_wire("agent_failed", grpc.StatusCode.ABORTED, "agent said no")
    assert isinstance(back, errors.AgentFailed) and back.status_code() == grpc.StatusCode.ABORTED


def test_unknown_kind_keeps_code_and_message() -> None:
    back = errors.MeshError.from_wire("from_the_future", grpc.StatusCode.OUT_OF_RANGE, "new")
    assert back.status_code() == grpc.StatusCode.OUT_OF_RANGE and back.message == "new"


def test_every_kind_is_unique() -> None:
    kinds = [c.kind for c in errors._all_subclasses(errors.MeshError)]
    assert len(kinds) == len(set(kinds))


def test_a_budget_refusal_keeps_its_numbers_across_the_wire() -> None:
    sent = errors.BudgetExhausted(
        budget_id="bg-1",
        scope="workflow wf-7",
        period="day 2026-12-06",
        limit_micro_usd=500_000,
        spent_micro_usd=480_000,
        reserved_micro_usd=10_000,
        needed_micro_usd=20_000,
        capability="billing.refund",
        set_command="meshwarden budget set --workflow wf-7 --per day",
    )
    got = errors.MeshError.from_wire(sent.kind, sent.code, sent.message, sent.metadata())
    assert isinstance(got, errors.BudgetExhausted) and got.message == sent.message
    assert (got.budget_id, got.scope, got.limit_micro_usd, got.spent_micro_usd, got.remaining_micro_usd) == (
        "bg-1",
        "workflow wf-7",
        500_000,
        480_000,
        10_000,
    )
    forged = errors.MeshError.from_wire(
        sent.kind, sent.code, "x", {"limit_micro_usd": "-5", "spent_micro_usd": "9" * 40}
    )
    assert isinstance(forged, errors.BudgetExhausted) and (forged.limit_micro_usd, forged.spent_micro_usd) == (0, 0)


def test_an_agent_failure_carries_what_the_handler_spent() -> None:
    spent = Usage("claude-3-5-haiku", 4000, 1000, 20000)
    failed = errors.AgentFailed(grpc.StatusCode.INTERNAL, "failed after spending", usage=spent)
    back = errors.MeshError.from_wire(failed.kind, failed.status_code(), failed.message, failed.metadata())
    assert isinstance(back, errors.AgentFailed) and back.usage == spent
    for bad in ('["m", -1, 0, 0]', '["m", 1.5, 0, 0]', "not json", "[1, 2]", '["", 0, 0, 0]'):
        rebuilt = errors.MeshError.from_wire(failed.kind, failed.status_code(), "m", {"usage": bad})
        assert isinstance(rebuilt, errors.AgentFailed) and rebuilt.usage is None
