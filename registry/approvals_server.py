"""The gRPC face of approvals (meshwarden.v1.Approvals).

Sidecars ask (RequestApproval) and wait (WaitApproval) with their agent's SVID, only for their
own agent. Why a server stream per approval rather than an event on the registry's Watch
stream: only the one sidecar holding the call cares about the decision, the wait is bounded
by that call's deadline (cancelling the call cancels the stream), and the Watch stream stays
the catalog's and controls' (sent to every sidecar). Operators list, show and decide with the
operator token; decisions are audited (registry.approvals).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc

from meshwarden.clock import Clock
from meshwarden.registry.approvals import APPROVAL_ID, ApprovalAsk, Approvals, is_final
from meshwarden.registry.authz import Authorizer, Caller, method, require_agent
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.rescue import abort, serve_unary
from meshwarden.registry.store.sqlite.approvals import APPROVED, DENIED, EXPIRED, PENDING, USED, StoredApproval
from meshwarden.registry.wire import timestamp
from meshwarden.v1 import approvals_pb2, approvals_pb2_grpc

SERVICE_NAME: Final = approvals_pb2.DESCRIPTOR.services_by_name["Approvals"].full_name
REQUEST: Final = method(SERVICE_NAME, "RequestApproval")
WAIT: Final = method(SERVICE_NAME, "WaitApproval")
LIST: Final = method(SERVICE_NAME, "ListApprovals")
GET: Final = method(SERVICE_NAME, "GetApproval")
DECIDE: Final = method(SERVICE_NAME, "DecideApproval")
MAX_LIST: Final = 1000
_STATES: Final = {
    PENDING: approvals_pb2.PENDING,
    APPROVED: approvals_pb2.APPROVED,
    DENIED: approvals_pb2.DENIED,
    EXPIRED: approvals_pb2.EXPIRED,
    USED: approvals_pb2.USED,
}

Context = grpc.aio.ServicerContext[Any, Any]


class ApprovalsService(approvals_pb2_grpc.ApprovalsServicer):
    def __init__(self, approvals: Approvals, authorizer: Authorizer, clock: Clock) -> None:
        self._approvals, self._authorizer, self._clock = approvals, authorizer, clock

    async def RequestApproval(
        self, request: approvals_pb2.RequestApprovalRequest, context: Context
    ) -> approvals_pb2.RequestApprovalResponse:
        return await serve_unary(REQUEST, self._request, request, context, self._authorizer)

    async def WaitApproval(
        self, request: approvals_pb2.WaitApprovalRequest, context: Context
    ) -> AsyncIterator[approvals_pb2.Approval]:
        try:
            caller = self._authorizer.caller(context)
            self._authorizer.check(WAIT, caller)
            approval = self._approvals.get(_id(request.id))
            require_agent(caller, approval.agent, f"wait for approval {approval.id}")
            while not is_final(approval):
                changed = self._approvals.changed
                left = approval.expires_at - self._clock.wall()
                try:
                    await asyncio.wait_for(changed.wait(), max(left, 0.0) + 0.05)
                except TimeoutError:
                    pass  # its time ended: `get` expires it
                approval = self._approvals.get(approval.id)
            yield approval_to_proto(approval)
        except Exception as exc:  # noqa: BLE001 -- the stream's rescue
            await abort(context, exc, WAIT)

    async def ListApprovals(
        self, request: approvals_pb2.ListApprovalsRequest, context: Context
    ) -> approvals_pb2.ListApprovalsResponse:
        return await serve_unary(LIST, self._list, request, context, self._authorizer)

    async def GetApproval(self, request: approvals_pb2.GetApprovalRequest, context: Context) -> approvals_pb2.Approval:
        return await serve_unary(GET, self._get, request, context, self._authorizer)

    async def DecideApproval(
        self, request: approvals_pb2.DecideApprovalRequest, context: Context
    ) -> approvals_pb2.Approval:
        return await serve_unary(DECIDE, self._decide, request, context, self._authorizer)

    def _request(
        self, request: approvals_pb2.RequestApprovalRequest, caller: Caller
    ) -> approvals_pb2.RequestApprovalResponse:
        identity = require_agent(caller, request.agent, "ask for an approval")
        answer = self._approvals.request(
            ApprovalAsk(
                agent=request.agent,
                spiffe_id=identity.spiffe_id,
                call_kind=request.call_kind or "agent",
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

    def _list(
        self, request: approvals_pb2.ListApprovalsRequest, _caller: Caller
    ) -> approvals_pb2.ListApprovalsResponse:
        found = self._approvals.recent(pending_only=not request.all, limit=min(request.limit or 100, MAX_LIST))
        return approvals_pb2.ListApprovalsResponse(approvals=[approval_to_proto(a) for a in found])

    def _get(self, request: approvals_pb2.GetApprovalRequest, _caller: Caller) -> approvals_pb2.Approval:
        return approval_to_proto(self._approvals.get(_id(request.id)))

    def _decide(self, request: approvals_pb2.DecideApprovalRequest, caller: Caller) -> approvals_pb2.Approval:
        return approval_to_proto(self._approvals.decide(_id(request.id), request.approve, request.reason, caller))


def approval_to_proto(approval: StoredApproval) -> approvals_pb2.Approval:
    return approvals_pb2.Approval(
        id=approval.id,
        state=_STATES.get(approval.state, approvals_pb2.APPROVAL_STATE_UNSPECIFIED),
        agent=approval.agent,
        spiffe_id=approval.spiffe_id,
        call_kind=approval.call_kind,
        capability=approval.capability,
        arguments_sha256=approval.arguments_sha256,
        arguments_json=approval.arguments_json,
        risk_factors=approval.risk_factors,
        policy_ids=approval.policy_ids,
        bundle=approval.bundle,
        session_id=approval.session_id,
        workflow_id=approval.workflow_id,
        call_id=approval.call_id,
        requested_at=timestamp(approval.requested_at),
        expires_at=timestamp(approval.expires_at),
        decided_at=timestamp(approval.decided_at) if approval.decided_at is not None else None,
        decided_by=approval.decided_by,
        reason=approval.reason,
        used_at=timestamp(approval.used_at) if approval.used_at is not None else None,
        used_by_call_id=approval.used_by_call_id,
    )


def _id(text: str) -> str:
    if not APPROVAL_ID.fullmatch(text):
        raise InvalidInput(
            "id", f"{text[:40]!r} is no approval id (ap- and 12 hex digits; see meshwarden approvals list)"
        )
    return text
