from __future__ import annotations

import grpc
import pytest

from meshwarden import errors


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
