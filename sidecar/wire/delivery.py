"""meshwarden.v1.Delivery / Outcome (the sidecar to its own agent) <-> Call / Reply. The
agent's side of these messages is the SDK's (meshwarden/agent.py)."""

from __future__ import annotations

import math

from meshwarden import task_fence
from meshwarden.sidecar import usage
from meshwarden.sidecar.call import Call, Reply
from meshwarden.v1 import agent_pb2


def to_delivery(call: Call, now: float) -> agent_pb2.Delivery:
    task_id, fencing_token = task_fence.claimed_task(call.task_token)  # verified by the task_fence stage
    caller_left_s = call.caller_deadline - now if call.caller_deadline else 0.0
    return agent_pb2.Delivery(
        call_id=call.call_id,
        capability=call.capability,
        payload_json=call.payload,
        caller_agent=call.caller.agent,
        caller_spiffe_id=call.caller.spiffe_id,
        session_id=call.session_id,
        workflow_id=call.workflow_id,
        attempt=call.attempt,
        idempotency_key=call.idempotency_key,
        parent_call_id=call.parent_call_id,
        task_id=task_id,
        fencing_token=fencing_token,
        task_token=call.task_token if task_id else b"",
        on_behalf_of=call.record.on_behalf_of,
        session_labels=dict(call.record.session_labels),
        caller_timeout_ms=max(math.ceil(caller_left_s * 1000), 1) if call.caller_deadline else 0,
    )


def to_reply(outcome: agent_pb2.Outcome, *, instance_id: str, agent: str, version: str) -> Reply:
    """The agent answers with its result; who answered is what this sidecar knows of it."""
    return Reply(
        outcome.result_json,
        instance_id,
        agent,
        version,
        usage.from_proto(outcome.usage if outcome.HasField("usage") else None),
    )
