"""sidecar.call_end: the one classification of how a call ended, which tracing, metrics and
receipts all report."""

from __future__ import annotations

import asyncio

import grpc

from meshwarden.errors import PolicyDenied, Unclassified
from meshwarden.sidecar.call_end import SERVED, call_end_of


def test_a_mesh_error_ends_with_its_code_kind_message_and_itself() -> None:
    err = PolicyDenied("agent a may not call billing.refund", policy_ids=("deny-refunds",))
    ended = call_end_of(err)
    assert (ended.code, ended.kind, ended.message, ended.error) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "policy_denied",
        "agent a may not call billing.refund",
        err,
    )
    assert not ended.served


def test_an_unknown_kind_from_outside_keeps_its_kind() -> None:
    ended = call_end_of(Unclassified(grpc.StatusCode.ABORTED, "newer_kind", "from a newer sidecar", {}))
    assert (ended.code, ended.kind) == (grpc.StatusCode.ABORTED, "newer_kind")


def test_cancellation_and_bugs_are_told_apart_from_errors_and_from_each_other() -> None:
    cancelled, fault = call_end_of(asyncio.CancelledError()), call_end_of(KeyError("x"))
    assert (cancelled.code, cancelled.kind, cancelled.error) == (grpc.StatusCode.CANCELLED, "cancelled", None)
    assert (fault.code, fault.kind, fault.error) == (grpc.StatusCode.INTERNAL, "internal", None)
    assert "x" not in fault.message  # a bug's details go to the log, not to the caller's receipt
    assert SERVED.served and SERVED.kind == ""
