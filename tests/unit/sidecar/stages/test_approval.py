"""The approval stage against the registry's real approvals aggregate (a real SQLite store),
reached through an in-process stand-in for the gRPC stub: what the agent gets when it does not
wait, when it waits and an operator decides, and what the call's record (its receipt) says.
The registry's refusals (other arguments) cross real gRPC in tests/integration/test_approvals.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from meshwarden.errors import ApprovalDenied, ApprovalPending
from meshwarden.registry.api.approvals import approval_to_proto
from meshwarden.registry.approvals import ApprovalAsk, Approvals
from meshwarden.registry.audit import Audit
from meshwarden.registry.authz import Caller as RegistryCaller
from meshwarden.registry.store.sqlite import open_sqlite
from meshwarden.sidecar.approval_desk import ApprovalDesk
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call
from meshwarden.sidecar.stages import approval
from meshwarden.v1 import approvals_pb2
from tests.unit.sidecar.fakes import FakeClock, Recorder, call

OPERATOR = RegistryCaller(None, 0.0, True, False, "ipv4:127.0.0.1:1", operator_id="operator:sha256:abc")


class InProcessStub:
    """RequestApproval and WaitApproval as the registry's servicer answers them, minus gRPC."""

    def __init__(self, approvals: Approvals) -> None:
        self._approvals = approvals

    async def RequestApproval(self, request: approvals_pb2.RequestApprovalRequest, timeout: float) -> Any:
        answer = await self._approvals.request(
            ApprovalAsk(
                agent=request.agent,
                spiffe_id="",
                call_kind=request.call_kind,
                capability=request.capability,
                arguments_sha256=request.arguments_sha256,
                arguments_json=request.arguments_json,
                risk_factors=tuple(request.risk_factors),
                policy_ids=tuple(request.policy_ids),
                bundle=request.bundle,
                session_id=request.session_id,
                workflow_id=request.workflow_id,
                call_id=request.call_id,
                ttl_s=request.ttl_s,
                approval_id=request.approval_id,
            )
        )
        return approvals_pb2.RequestApprovalResponse(
            approval=approval_to_proto(answer.approval), granted=answer.granted
        )

    def WaitApproval(self, request: approvals_pb2.WaitApprovalRequest, timeout: float) -> Any:
        approvals = self._approvals

        class Stream:
            def __aiter__(self) -> AsyncIterator[approvals_pb2.Approval]:
                return self._gen()

            async def _gen(self) -> AsyncIterator[approvals_pb2.Approval]:
                yield approval_to_proto(await approvals.wait(request.id))

            def cancel(self) -> None:
                pass

        return Stream()


@pytest.fixture
async def approvals(tmp_path: Path) -> AsyncIterator[Approvals]:
    stores = await open_sqlite(tmp_path, event_log_retention=10)
    clock = FakeClock()
    yield Approvals(stores.approvals, clock, Audit(stores.audit, clock))
    await stores.close()


def held(**kw: object) -> Call:
    c = call(payload=b'{"amount_cents":25000}', **kw)
    c.record.approval_risks, c.record.approval_ttl_s = ("refund of 100 dollars or more",), 60
    return c


def stage(approvals: Approvals, inner: Recorder) -> approval.Approval:
    desk = ApprovalDesk(lambda: InProcessStub(approvals))  # type: ignore[arg-type, return-value]
    return approval.Approval(inner, desk, PolicyHolder(), FakeClock())


async def test_a_call_no_policy_holds_passes_untouched(approvals: Approvals) -> None:
    inner = Recorder()
    c = call()
    await stage(approvals, inner)(c)
    assert inner.calls == [c] and c.record.approval_id == ""


async def test_without_waiting_the_id_comes_back_and_a_retry_after_approval_goes_once(approvals: Approvals) -> None:
    inner = Recorder()
    with pytest.raises(ApprovalPending) as pending:
        await stage(approvals, inner)(held(approval_wait=False))
    assert inner.calls == [] and pending.value.risks == ("refund of 100 dollars or more",)
    await approvals.decide(pending.value.approval_id, True, "ok", OPERATOR)
    retry = held(approval_id=pending.value.approval_id)
    await stage(approvals, inner)(retry)
    assert len(inner.calls) == 1
    assert (retry.record.approval_id, retry.record.approval_decision) == (pending.value.approval_id, "approved")
    assert retry.record.approver.startswith("operator:sha256:abc")
    with pytest.raises(ApprovalDenied) as again:
        await stage(approvals, inner)(held(approval_id=pending.value.approval_id))
    assert again.value.decision == "used" and len(inner.calls) == 1


async def test_a_waiting_call_is_refused_with_the_operators_reason(approvals: Approvals) -> None:
    inner = Recorder()
    c = held()
    waiting = asyncio.create_task(stage(approvals, inner)(c))
    while not await approvals.recent(pending_only=True, limit=1):
        await asyncio.sleep(0)
    [asked] = await approvals.recent(pending_only=True, limit=1)
    await approvals.decide(asked.id, False, "not this customer", OPERATOR)
    with pytest.raises(ApprovalDenied) as denied:
        await waiting
    assert denied.value.decision == "denied" and denied.value.reason == "not this customer"
    assert inner.calls == [] and c.record.approval_decision == "denied"
