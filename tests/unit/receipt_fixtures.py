"""Receipts as the sidecars write them, for tests of what is built from them."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from meshwarden.v1 import receipts_pb2

TEAMS = {"frontdesk": "support", "planner": "support", "billing": "finance", "kb": "knowledge"}


def stamp(seconds: float) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(seconds * 1e9))
    return t


def receipt(
    direction: str,
    call_id: str,
    caller: str,
    callee: str,
    capability: str,
    *,
    session: str = "s1",
    workflow: str = "w1",
    parent: str = "",
    at: float = 1000.0,
    latency_us: int = 2000,
    status: str = "OK",
    decision: str = "allow",
    attempt: int = 1,
    version: str = "1.0.0",
    usage: tuple[str, int, int, int] | None = None,
) -> receipts_pb2.Receipt:
    r = receipts_pb2.Receipt(
        sidecar_spiffe_id=f"spiffe://meshwarden.local/agent/{caller if direction == 'outbound' else callee}",
        direction=direction,
        call_id=call_id,
        parent_call_id=parent,
        session_id=session,
        workflow_id=workflow,
        caller_agent=caller,
        caller_team=TEAMS.get(caller, ""),
        callee_agent=callee,
        callee_team=TEAMS.get(callee, ""),
        capability=capability,
        version=version,
        status=status,
        policy_decision=decision,
        attempt=attempt,
        started_at=stamp(at),
        ended_at=stamp(at + latency_us / 1e6),
        latency_us=latency_us,
    )
    if usage is not None:
        r.usage.CopyFrom(
            receipts_pb2.Usage(model=usage[0], input_tokens=usage[1], output_tokens=usage[2], cost_micro_usd=usage[3])
        )
    return r


def both_sides(call_id: str, caller: str, callee: str, capability: str, **kw: object) -> list[receipts_pb2.Receipt]:
    """A call as both sidecars record it: the caller's receipt and the callee's, same usage."""
    return [
        receipt("outbound", call_id, caller, callee, capability, **kw),
        receipt("inbound", call_id, caller, callee, capability, **kw),
    ]  # type: ignore[arg-type]
