"""One session as a tree: each call under the call that made it (parent_call_id), with what
the receipts say about it (kind, model, tool, policy decision and ids, approval, budget,
cost, status), for the console's session page.

Calls come from meshwarden.receipt_calls (the rule for merging a call's two receipts); the
fields it does not merge (policy ids, approval, model and tool names) are read from the
caller's receipt, else the callee's. A call whose parent is not in the session is a root.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from meshwarden.receipt_calls import OUTBOUND, ReceiptCall, calls_of
from meshwarden.v1 import receipts_pb2


@dataclass(frozen=True, slots=True)
class Step:
    call: ReceiptCall
    policy_ids: tuple[str, ...]
    approval_id: str
    approval_decision: str
    approver: str
    model: str  # the model that answered, for a model call
    tool: str  # SERVER.TOOL, for a tool call
    budget_ids: tuple[str, ...]
    budget_downgraded_to: str
    tokens: int
    children: list[Step] = field(default_factory=list)


def tree(receipts: Sequence[receipts_pb2.Receipt]) -> list[Step]:
    """The session's root calls in the order they started, each with its calls below it."""
    first: dict[str, receipts_pb2.Receipt] = {}
    for receipt in receipts:
        kept = first.get(receipt.call_id)
        if kept is None or (kept.direction != OUTBOUND and receipt.direction == OUTBOUND):
            first[receipt.call_id] = receipt
    steps = {c.call_id: _step(c, first[c.call_id]) for c in calls_of(receipts)}
    roots: list[Step] = []
    for step in steps.values():  # calls_of gives them in the order they started
        parent = steps.get(step.call.parent_call_id)
        if parent is None or parent is step:
            roots.append(step)
        else:
            parent.children.append(step)
    return roots


def _step(call: ReceiptCall, receipt: receipts_pb2.Receipt) -> Step:
    usage = call.usage
    return Step(
        call=call,
        policy_ids=tuple(receipt.policy_ids),
        approval_id=receipt.approval_id,
        approval_decision=receipt.approval_decision,
        approver=receipt.approver,
        model=receipt.model_response or receipt.usage.model or receipt.model_requested,
        tool=f"{receipt.tool_server}.{receipt.tool_name}" if receipt.tool_name else "",
        budget_ids=tuple(receipt.budget_ids),
        budget_downgraded_to=receipt.budget_downgraded_to,
        tokens=(usage.input_tokens + usage.output_tokens) if usage is not None else 0,
    )
