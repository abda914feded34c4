"""One call, out of the receipts its sidecars wrote: the caller's sidecar writes one receipt per
call ("outbound"), the callee's one per delivery to its agent ("inbound": a retried call that
reached two instances has two). The registry's cost tables and the CLI's session timeline both
read calls, not receipts, so the rule for merging them is kept here, once:

- status, attempt, latency and start come from the caller's side (what the caller lived
  through, retries included), else from the callee's when the caller's receipt is not stored yet;
- the policy decision is the caller's, unless the callee's sidecar denied what the caller allowed;
- usage, and so spend, is counted once per call: the sum over the callee side's receipts (each
  delivery ran the agent and consumed what it reported), else the usage the caller's side saw
  (its receipt arrived first). Counting both sides would count every dollar twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from meshwarden.usage import Usage
from meshwarden.v1 import receipts_pb2

OUTBOUND = "outbound"
INBOUND = "inbound"


@dataclass(frozen=True, kw_only=True, slots=True)
class ReceiptCall:
    call_id: str
    parent_call_id: str
    session_id: str
    workflow_id: str
    capability: str
    version: str
    caller_agent: str
    caller_team: str
    callee_agent: str
    callee_team: str
    status: str
    error_kind: str
    error_message: str
    policy_decision: str
    attempt: int
    kill_switch_id: str
    started_at: float  # seconds since the epoch
    latency_us: int
    usage: Usage | None
    sides: tuple[str, ...]  # which sidecars' receipts are stored: "outbound", "inbound"
    task_id: str = ""  # the task the call was made for, and the fencing token it carried
    fencing_token: int = 0
    # "agent" or "model" (or "tool"). A model call's usage was measured by the model gateway
    # from the provider's answer; an agent call's usage is what the callee agent reported.
    call_kind: str = "agent"
    model_provider: str = ""
    policy_ids: tuple[str, ...] = ()  # the policies behind the decision (the callee's when it denied)
    # A model call's usage is partly the gateway's estimate (a stream cut before the provider's
    # usage came); the receipt says which part.
    usage_estimated: bool = False
    # A tool call: the MCP server and tool, its risk and how it ended ("ok", "tool_error", "failed").
    tool_server: str = ""
    tool_name: str = ""
    tool_risk: str = ""
    tool_result_class: str = ""
    # The person's approval the call needed, and its decision ("" when it needed none).
    approval_id: str = ""
    approval_decision: str = ""
    # A budget that had no room for the call as asked (it refused it, or it ran as the cheaper
    # `budget_downgraded_to`), recorded by the caller's sidecar.
    budget_short: str = ""
    budget_downgraded_to: str = ""

    @property
    def usage_measured_by(self) -> str:
        """ "gateway" (a model call's measured usage, a tool call's price from the bundle),
        "agent" (reported by the callee agent), or "" when the call has no usage."""
        if self.usage is None:
            return ""
        return "agent" if self.call_kind == "agent" else "gateway"

    @property
    def spender_agent(self) -> str:
        """The agent whose work cost the money: the callee of an agent call, the caller of a
        model or tool call (no agent answers those)."""
        return self.callee_agent if self.call_kind == "agent" else self.caller_agent

    @property
    def spender_team(self) -> str:
        return self.callee_team if self.call_kind == "agent" else self.caller_team

    @property
    def cost_micro_usd(self) -> int:
        return self.usage.cost_micro_usd if self.usage is not None else 0


def calls_of(receipts: Iterable[receipts_pb2.Receipt]) -> list[ReceiptCall]:
    """The calls the receipts describe, in the order they started (then by call id)."""
    by_call: dict[str, list[receipts_pb2.Receipt]] = {}
    for receipt in receipts:
        by_call.setdefault(receipt.call_id, []).append(receipt)
    calls = [_merge(group) for group in by_call.values()]
    calls.sort(key=lambda c: (c.started_at, c.call_id))
    return calls


def _merge(receipts: list[receipts_pb2.Receipt]) -> ReceiptCall:
    outbound = [r for r in receipts if r.direction == OUTBOUND]
    inbound = sorted((r for r in receipts if r.direction != OUTBOUND), key=lambda r: (r.attempt, _seconds(r)))
    first = outbound[0] if outbound else inbound[-1]  # the caller's view, else the last delivery
    callee = inbound[-1] if inbound else first
    decision, policy_ids = first.policy_decision, tuple(first.policy_ids)
    denying = [r for r in inbound if r.policy_decision == "deny"]
    if denying:
        decision, policy_ids = "deny", tuple(denying[-1].policy_ids) or policy_ids
    return ReceiptCall(
        call_id=first.call_id,
        parent_call_id=first.parent_call_id or callee.parent_call_id,
        session_id=first.session_id or callee.session_id,
        workflow_id=first.workflow_id or callee.workflow_id,
        capability=first.capability,
        version=callee.version or first.version,
        caller_agent=first.caller_agent or callee.caller_agent,
        caller_team=first.caller_team or callee.caller_team,
        callee_agent=callee.callee_agent or first.callee_agent,
        callee_team=callee.callee_team or first.callee_team,
        status=first.status,
        error_kind=first.error_kind,
        error_message=first.error_message,
        policy_decision=decision,
        policy_ids=policy_ids,
        attempt=first.attempt,
        kill_switch_id=first.kill_switch_id or callee.kill_switch_id,
        started_at=_seconds(first),
        latency_us=first.latency_us,
        usage=_usage(inbound) if inbound else _usage(outbound[:1]),
        task_id=first.task_id or callee.task_id,
        fencing_token=first.fencing_token or callee.fencing_token,
        sides=tuple(sorted({OUTBOUND if r.direction == OUTBOUND else INBOUND for r in receipts}, reverse=True)),
        call_kind=first.call_kind or "agent",
        model_provider=first.model_provider,
        usage_estimated=first.input_tokens_estimated or first.output_tokens_estimated,
        tool_server=first.tool_server,
        tool_name=first.tool_name,
        tool_risk=first.tool_risk,
        tool_result_class=first.tool_result_class,
        approval_id=first.approval_id or callee.approval_id,
        approval_decision=first.approval_decision or callee.approval_decision,
        budget_short=first.budget_short,
        budget_downgraded_to=first.budget_downgraded_to,
    )


def _usage(receipts: list[receipts_pb2.Receipt]) -> Usage | None:
    reported = [Usage.from_proto(r.usage) for r in receipts if r.HasField("usage") and r.usage != receipts_pb2.Usage()]
    if not reported:
        return None
    total = reported[0]
    for more in reported[1:]:
        total = total + more
    return total


def _seconds(receipt: receipts_pb2.Receipt) -> float:
    return receipt.started_at.seconds + receipt.started_at.nanos / 1e9
