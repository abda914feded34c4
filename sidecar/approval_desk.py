"""This sidecar's side of approvals: ask the registry for one (RequestApproval) and wait for its
decision (the WaitApproval stream), as this sidecar's SVID. The registry's refusals become the
mesh's typed errors here, so the approval stage deals only in those."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from meshwarden.errors import ApprovalDenied, BadPayload, MeshError, RegistryUnavailable
from meshwarden.v1 import approvals_pb2, approvals_pb2_grpc

StubSource = Callable[[], approvals_pb2_grpc.ApprovalsStub]
REQUEST_TIMEOUT_S = 5.0


class ApprovalDesk:
    def __init__(self, stub: StubSource) -> None:
        self._stub = stub

    async def request(
        self, request: approvals_pb2.RequestApprovalRequest, timeout_s: float
    ) -> approvals_pb2.RequestApprovalResponse:
        try:
            response: approvals_pb2.RequestApprovalResponse = await self._stub().RequestApproval(
                request, timeout=max(min(timeout_s, REQUEST_TIMEOUT_S), 0.01)
            )
        except grpc.aio.AioRpcError as err:
            raise _translate(err, request) from err
        return response

    async def wait(self, approval_id: str, timeout_s: float) -> approvals_pb2.Approval | None:
        """The approval once decided or expired; None when `timeout_s` ended first."""
        if timeout_s <= 0:
            return None
        stream = self._stub().WaitApproval(approvals_pb2.WaitApprovalRequest(id=approval_id), timeout=timeout_s)
        try:
            async for approval in stream:
                found: approvals_pb2.Approval = approval
                return found
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return None
            raise RegistryUnavailable(
                f"lost the wait for approval {approval_id} at the registry ({err.code().name}: {err.details()}); "
                f"retry the call with header x-meshwarden-approval-id: {approval_id}"
            ) from err
        finally:
            stream.cancel()
        return None


def _translate(err: grpc.aio.AioRpcError, request: approvals_pb2.RequestApprovalRequest) -> MeshError:
    code, details = err.code(), err.details() or ""
    if code == grpc.StatusCode.PERMISSION_DENIED and request.approval_id:
        return ApprovalDenied(request.approval_id, "mismatch", details)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
        return BadPayload(f"the registry refused the approval request for {request.capability}: {details}")
    return RegistryUnavailable(
        f"call to {request.capability} needs a person's approval, and the registry could not be asked "
        f"({code.name}: {details}); try again"
    )
