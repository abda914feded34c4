"""One row per call with what `meshwarden changes` compares (registry.session_changes): when it
started, how it ended, what it cost and took, and the values a change is read from (the
callee's version, the model, the bundle revision, the tool's schema hash).

Both stores keep these rows beside each session's aggregate, written as receipts arrive
(registry.store.sqlite.call_facts, registry.store.postgres.call_facts), so comparing before and
after reads small rows instead of parsing every receipt.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshwarden.receipt_calls import calls_of
from meshwarden.registry.session_views import failed
from meshwarden.registry.store.records import CallFact
from meshwarden.v1 import receipts_pb2


def facts_of(receipts: Iterable[receipts_pb2.Receipt]) -> list[CallFact]:
    receipts = list(receipts)
    caller_side: dict[str, receipts_pb2.Receipt] = {}
    for r in receipts:  # the bundle revision the caller's sidecar ran, else the callee's
        if r.direction == "outbound" or r.call_id not in caller_side:
            caller_side[r.call_id] = r
    found = []
    for call in calls_of(receipts):
        side = caller_side[call.call_id]
        found.append(
            CallFact(
                call_id=call.call_id,
                session_id=call.session_id,
                started_at=call.started_at,
                latency_us=call.latency_us,
                ok=not failed(call),
                cost_micro_usd=call.cost_micro_usd,
                capability=call.capability,
                call_kind=call.call_kind,
                callee_agent=call.callee_agent,
                version=call.version,
                spender_agent=call.spender_agent,
                model=call.usage.model if call.usage is not None else "",
                bundle_revision=side.bundle_revision,
                tool=f"{call.tool_server}.{call.tool_name}" if call.call_kind == "tool" else "",
                tool_schema=side.tool_schema_sha256,
            )
        )
    return found
