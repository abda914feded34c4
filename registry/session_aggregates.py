"""One session's totals, computed from every receipt stored for it, for the receipt store to
keep beside the receipts (registry.store.records.SessionAggregate).

Why recompute a session rather than add each receipt's share: a call has up to two sides
(meshwarden.receipt_calls), shipped by different sidecars at different times, and its spend is
counted once by a rule that depends on which sides are stored. Recomputing the sessions a
batch touches, in the batch's transaction, keeps the totals equal to what reading every
receipt would give, at the cost of reading those sessions' receipts (an index lookup each).
"""

from __future__ import annotations

from collections.abc import Iterable

from meshwarden.receipt_calls import ReceiptCall, calls_of
from meshwarden.registry.session_views import COST_KEYS, failed
from meshwarden.registry.store.records import CostShare, SessionAggregate
from meshwarden.v1 import receipts_pb2


def aggregate(session_id: str, receipts: Iterable[receipts_pb2.Receipt]) -> SessionAggregate:
    calls = calls_of(receipts)
    return SessionAggregate(
        session_id=session_id,
        workflow_id=next((c.workflow_id for c in calls if c.workflow_id), ""),
        started_at=min((c.started_at for c in calls), default=0.0),
        last_activity_at=max((c.started_at + c.latency_us / 1e6 for c in calls), default=0.0),
        calls=len(calls),
        failures=sum(1 for c in calls if failed(c)),
        cost_micro_usd=sum(c.cost_micro_usd for c in calls),
        input_tokens=sum(_input_tokens(c) for c in calls),
        output_tokens=sum(_output_tokens(c) for c in calls),
        agents=tuple(sorted({a for c in calls for a in (c.caller_agent, c.callee_agent) if a})),
        teams=tuple(sorted({t for c in calls for t in (c.caller_team, c.callee_team) if t})),
        cost_shares=tuple(_shares(calls)),
    )


def _shares(calls: list[ReceiptCall]) -> list[CostShare]:
    shares: list[CostShare] = []
    for by, key_of in COST_KEYS.items():
        groups: dict[str, list[ReceiptCall]] = {}
        for call in calls:
            groups.setdefault(key_of(call), []).append(call)
        shares += [
            CostShare(
                by=by,
                key=key,
                calls=len(group),
                failures=sum(1 for c in group if failed(c)),
                cost_micro_usd=sum(c.cost_micro_usd for c in group),
                input_tokens=sum(_input_tokens(c) for c in group),
                output_tokens=sum(_output_tokens(c) for c in group),
            )
            for key, group in groups.items()
        ]
    return shares


def _input_tokens(call: ReceiptCall) -> int:
    return call.usage.input_tokens if call.usage is not None else 0


def _output_tokens(call: ReceiptCall) -> int:
    return call.usage.output_tokens if call.usage is not None else 0
