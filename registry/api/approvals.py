"""The approvals' RPCs (meshwarden.v1.Approvals): proto in, registry.approvals, proto out.

Sidecars ask (RequestApproval) and wait (WaitApproval) with their agent's SVID, only for their
own agent. Why a server stream per approval rather than an event on the registry's Watch
stream: only the one sidecar holding the call cares about the decision, the wait is bounded
by that call's deadline (cancelling the call cancels the stream), and the Watch stream stays
the catalog's and controls' (sent to every sidecar). Operators list, show and decide with the
operator token; decisions are audited (registry.approvals). Who may call what is
registry.authz's table, applied by the interceptor (registry.api.authorization), which also
turns errors into statuses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import grpc

from meshwarden.registry import keyset
from meshwarden.registry.api.service import Handler
from meshwarden.registry.approvals import (
    APPROVAL_ID,
    APPROVED,
    DENIED,
    EXPIRED,
    PENDING,
    USED,
    ApprovalAsk,
    Approvals,
    StoredApproval,
)
from meshwarden.registry.authz import current_caller
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.wire import timestamp
from meshwarden.v1 import approvals_pb2

MAX_LIST: Final = 1000
_STATES: Final = {
    PENDING: approvals_pb2.PENDING,
    APPROVED: approvals_pb2.APPROVED,
    DENIED: approvals_pb2.DENIED,
    EXPIRED: approvals_pb2.EXPIRED,
    USED: approvals_pb2.USED,
}

Context = grpc.aio.ServicerContext[Any, Any]


class ApprovalsApi:
    def __init__(self, approvals: Approvals) -> None:
        self._approvals = approvals

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "RequestApproval": self.RequestApproval,
            "WaitApproval": self.WaitApproval,
            "ListApprovals": self.ListApprovals,
            "GetApproval": self.GetApproval,
            "DecideApproval": self.DecideApproval,
        }

    async def RequestApproval(
        self, request: approvals_pb2.RequestApprovalRequest, _: Context
    ) -> approvals_pb2.RequestApprovalResponse:
        answer = await self._approvals.request(
            ApprovalAsk(
                agent=request.agent,
                spiffe_id="",  # the caller's certificate's (registry.approvals)
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
            ),
            current_caller(),
        )
        return approvals_pb2.RequestApprovalResponse(
            approval=approval_to_proto(answer.approval), granted=answer.granted
        )

    async def WaitApproval(
        self, request: approvals_pb2.WaitApprovalRequest, _: Context
    ) -> AsyncIterator[approvals_pb2.Approval]:
        yield approval_to_proto(await self._approvals.wait(_id(request.id), current_caller()))

    async def ListApprovals(self, request: approvals_pb2.ListApprovalsRequest, _: Context) -> bytes:
        limit = min(request.limit or 100, MAX_LIST)
        after = keyset.decode(request.cursor, float, str) if request.cursor else None
        found = await self._approvals.recent(
            pending_only=not request.all, limit=limit, after=(float(after[0]), str(after[1])) if after else None
        )
        next_cursor = keyset.encode(found[-1].requested_at, found[-1].id) if len(found) == limit else ""
        # Up to MAX_LIST approvals of up to 64 KiB of arguments each: built and encoded in a
        # worker thread (registry.api.service takes the bytes as the response).
        return await asyncio.to_thread(
            lambda: approvals_pb2.ListApprovalsResponse(
                approvals=[approval_to_proto(a) for a in found], next_cursor=next_cursor
            ).SerializeToString()
        )

    async def GetApproval(self, request: approvals_pb2.GetApprovalRequest, _: Context) -> approvals_pb2.Approval:
        return approval_to_proto(await self._approvals.get(_id(request.id)))

    async def DecideApproval(self, request: approvals_pb2.DecideApprovalRequest, _: Context) -> approvals_pb2.Approval:
        decided = await self._approvals.decide(_id(request.id), request.approve, request.reason, current_caller())
        return approval_to_proto(decided)


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
