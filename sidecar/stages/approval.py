"""A person's approval, when policy asks for one (a permit with @approval decided the call).

Placed right after the policy stage: only an allowed call can need approval, and nothing is
spent on a call (budget, routing) while it waits. The call's exact argument bytes are hashed;
the registry gives this call an approval only for that hash, caller and capability, uses it
once, and expires it (deny by default). The agent either waits within its deadline (the
default) or, with `x-meshwarden-approval-wait: none`, is answered at once with ApprovalPending
carrying the id, and retries the same call later with `x-meshwarden-approval-id`.
"""

from __future__ import annotations

from meshwarden.clock import Clock
from meshwarden.errors import ApprovalDenied, ApprovalPending, PolicyDenied
from meshwarden.receipt_hash import HASH_PREFIX
from meshwarden.sidecar.approval_desk import ApprovalDesk
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call, Handler, Layer, Reply
from meshwarden.v1 import approvals_pb2

# Larger arguments are shown to reviewers by their sha256 only (the registry's own bound too).
MAX_SHOWN_ARGUMENTS_BYTES = 64 * 1024

_DECISIONS = {
    approvals_pb2.PENDING: "pending",
    approvals_pb2.APPROVED: "approved",
    approvals_pb2.DENIED: "denied",
    approvals_pb2.EXPIRED: "expired",
    approvals_pb2.USED: "used",
}


class Approval:
    def __init__(self, next: Handler, desk: ApprovalDesk | None, holder: PolicyHolder, clock: Clock) -> None:
        self._next, self._desk, self._holder, self._clock = next, desk, holder, clock

    async def __call__(self, call: Call) -> Reply:
        record = call.record
        if not record.approval_risks:
            return await self._next(call)
        if self._desk is None:  # no registry to ask (a sidecar run without one): deny by default
            raise PolicyDenied(
                f"call to {call.capability} needs a person's approval ({'; '.join(record.approval_risks)}), and this "
                "sidecar has no registry to ask for one"
            )
        answer = await self._request(self._desk, call, self._ask(call))
        approval = answer.approval
        record.approval_id = approval.id
        if not answer.granted and approval.state == approvals_pb2.PENDING:
            if not call.approval_wait:
                record.approval_decision = "pending"
                raise ApprovalPending(approval.id, call.capability, record.approval_risks)
            decided = await self._desk.wait(approval.id, self._left(call))
            if decided is None:
                record.approval_decision = "pending"
                raise ApprovalPending(approval.id, call.capability, record.approval_risks, waited=True)
            if decided.state == approvals_pb2.APPROVED:  # use it: single use, decided by the registry
                answer = await self._request(self._desk, call, self._ask(call, approval.id))
                approval = answer.approval
            else:
                approval = decided
        record.approval_decision = "approved" if answer.granted else _DECISIONS.get(approval.state, "unknown")
        record.approver = approval.decided_by
        if not answer.granted:
            raise _refusal(approval, call.capability)
        return await self._next(call)

    async def _request(
        self, desk: ApprovalDesk, call: Call, ask: approvals_pb2.RequestApprovalRequest
    ) -> approvals_pb2.RequestApprovalResponse:
        """The registry's answer; a refusal of the approval the agent sent (other arguments,
        caller or capability) is recorded in the call's receipt, then raised."""
        try:
            return await desk.request(ask, self._left(call))
        except ApprovalDenied as err:
            call.record.approval_id, call.record.approval_decision = err.approval_id, err.decision
            raise

    def _ask(self, call: Call, approval_id: str = "") -> approvals_pb2.RequestApprovalRequest:
        active = self._holder.active
        shown = (active is None or active.approvers_see_arguments) and len(call.payload) <= MAX_SHOWN_ARGUMENTS_BYTES
        return approvals_pb2.RequestApprovalRequest(
            agent=call.caller.agent,
            call_kind=call.kind,
            capability=call.capability,
            arguments_sha256=call.payload_sha256.removeprefix(HASH_PREFIX),
            arguments_json=call.payload.decode("utf-8", "replace") if shown else "",
            risk_factors=call.record.approval_risks,
            policy_ids=call.record.policy_ids,
            bundle=active.label if active is not None else "",
            session_id=call.session_id,
            workflow_id=call.workflow_id,
            call_id=call.call_id,
            ttl_s=call.record.approval_ttl_s,
            approval_id=approval_id or call.approval_id,
        )

    def _left(self, call: Call) -> float:
        return call.deadline - self._clock.monotonic()


def _refusal(approval: approvals_pb2.Approval, capability: str) -> ApprovalDenied:
    decision = _DECISIONS.get(approval.state, "unknown")
    if approval.state == approvals_pb2.DENIED:
        what = f"denied by {approval.decided_by}: {approval.reason}"
    elif approval.state == approvals_pb2.EXPIRED:
        what = f"expired ({approval.reason}); nobody's approval counts as a denial"
    elif approval.state == approvals_pb2.USED:
        what = f"already used by call {approval.used_by_call_id}; an approval lets one call through"
    else:
        what = f"is {decision}"
    return ApprovalDenied(
        approval.id,
        decision,
        f"call to {capability} refused: approval {approval.id} {what}; ask again by calling again "
        "(a new approval is opened for these arguments)",
        decided_by=approval.decided_by,
        reason=approval.reason,
    )


def layer(desk: ApprovalDesk | None, holder: PolicyHolder, clock: Clock) -> Layer:
    return lambda next: Approval(next, desk, holder, clock)
