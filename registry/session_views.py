"""Sessions and costs, computed from stored receipts (as calls, meshwarden.receipt_calls) and
session outcomes. Pure functions: the servicer (registry.sessions_server) fetches the receipts
of a time window from the receipt store and the outcomes of the sessions they name.

Choices the issue leaves open, made here:
- A session is "running" until one of its agents reports an outcome, then "finished".
- `since`/`until` select the calls that started in that window; a session is listed when it
  has such a call, and its counts and cost are those of the window.
- Costs group each call by its callee: the agent (and team) that did the work and reported the
  usage, the capability called, the model reported; a workflow by the call's workflow id. A
  model call (through the model gateway) groups by its caller, whose spend it is, and its usage
  is the gateway's measure, not a report.
  Calls that report no usage count as calls with spend 0 (model "": none reported).
- "Successful outcomes" of a key: the sessions that reported "succeeded" and have a call in
  the key's group; cost per successful outcome is the key's spend over that count, rounded to
  the nearest micro-dollar (0 when there is none).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from google.protobuf import timestamp_pb2

from meshwarden.receipt_calls import ReceiptCall, calls_of
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.outcomes import StoredOutcome
from meshwarden.v1 import receipts_pb2

RUNNING: Final = "running"
FINISHED: Final = "finished"
SUCCEEDED: Final = "succeeded"
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000

COST_KEYS: Final[Mapping[str, Callable[[ReceiptCall], str]]] = {
    "agent": lambda c: c.spender_agent,  # a model call's spend is its caller's
    "team": lambda c: c.spender_team,
    "workflow": lambda c: c.workflow_id,
    "capability": lambda c: c.capability,
    "model": lambda c: c.usage.model if c.usage is not None else "",
    "provider": lambda c: c.model_provider,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionFilter:
    state: str = ""  # "", "running" or "finished"
    agent: str = ""
    team: str = ""
    workflow_id: str = ""
    limit: int = DEFAULT_LIMIT
    # Set by the registry (never from the request) when an agent asks: only its own sessions.
    participant: str = ""

    @classmethod
    def from_proto(cls, request: receipts_pb2.ListSessionsRequest) -> SessionFilter:
        if request.state not in ("", RUNNING, FINISHED):
            raise InvalidInput("state", f"is {request.state!r}; it must be {RUNNING!r}, {FINISHED!r} or empty (both)")
        if request.limit > MAX_LIMIT:
            raise InvalidInput("limit", f"is {request.limit}; at most {MAX_LIMIT} sessions per request")
        return cls(
            state=request.state,
            agent=request.agent,
            team=request.team,
            workflow_id=request.workflow_id,
            limit=request.limit or DEFAULT_LIMIT,
        )


@dataclass(slots=True)
class _Session:
    session_id: str
    calls: list[ReceiptCall] = field(default_factory=list)


def list_sessions(
    receipts: Iterable[receipts_pb2.Receipt], outcomes: Mapping[str, StoredOutcome], wanted: SessionFilter
) -> list[receipts_pb2.SessionSummary]:
    """The sessions the receipts show, filtered, newest activity first, at most `wanted.limit`."""
    summaries = [summarize(s.session_id, s.calls, outcomes.get(s.session_id)) for s in _sessions(receipts)]
    kept = [s for s in summaries if _matches(s, wanted)]
    kept.sort(key=lambda s: (-s.last_activity_at.ToNanoseconds(), -s.started_at.ToNanoseconds(), s.session_id))
    return kept[: wanted.limit]


def session_ids(receipts: Iterable[receipts_pb2.Receipt]) -> set[str]:
    return {r.session_id for r in receipts if r.session_id}


def summarize(session_id: str, calls: list[ReceiptCall], outcome: StoredOutcome | None) -> receipts_pb2.SessionSummary:
    started = min((c.started_at for c in calls), default=0.0)
    last = max((c.started_at + c.latency_us / 1e6 for c in calls), default=0.0)
    return receipts_pb2.SessionSummary(
        session_id=session_id,
        workflow_id=next((c.workflow_id for c in calls if c.workflow_id), ""),
        state=outcome.outcome if outcome is not None else RUNNING,
        agents=sorted({a for c in calls for a in (c.caller_agent, c.callee_agent) if a}),
        teams=sorted({t for c in calls for t in (c.caller_team, c.callee_team) if t}),
        calls=len(calls),
        cost_micro_usd=sum(c.cost_micro_usd for c in calls),
        started_at=_timestamp(started),
        last_activity_at=_timestamp(max(last, outcome.reported_at if outcome is not None else 0.0)),
    )


def cost_rows(
    receipts: Iterable[receipts_pb2.Receipt], outcomes: Mapping[str, StoredOutcome], by: str
) -> list[receipts_pb2.CostRow]:
    """Spend, calls and successful outcomes per key, the biggest spend first."""
    key_of = COST_KEYS.get(by)
    if key_of is None:
        raise InvalidInput("by", f"is {by!r}; group costs by one of {', '.join(COST_KEYS)}")
    spend: dict[str, int] = {}
    calls: dict[str, int] = {}
    sessions: dict[str, set[str]] = {}
    for call in calls_of(receipts):
        key = key_of(call)
        spend[key] = spend.get(key, 0) + call.cost_micro_usd
        calls[key] = calls.get(key, 0) + 1
        if call.session_id:
            sessions.setdefault(key, set()).add(call.session_id)
    rows = []
    for key, total in spend.items():
        successes = sum(
            1 for s in sessions.get(key, ()) if (o := outcomes.get(s)) is not None and o.outcome == SUCCEEDED
        )
        rows.append(
            receipts_pb2.CostRow(
                key=key,
                cost_micro_usd=total,
                calls=calls[key],
                successful_outcomes=successes,
                cost_per_successful_outcome_micro_usd=(total + successes // 2) // successes if successes else 0,
            )
        )
    rows.sort(key=lambda r: (-r.cost_micro_usd, r.key))
    return rows


def _sessions(receipts: Iterable[receipts_pb2.Receipt]) -> list[_Session]:
    by_id: dict[str, _Session] = {}
    for call in calls_of(r for r in receipts if r.session_id):
        by_id.setdefault(call.session_id, _Session(call.session_id)).calls.append(call)
    return list(by_id.values())


def _matches(summary: receipts_pb2.SessionSummary, wanted: SessionFilter) -> bool:
    if wanted.state == RUNNING and summary.state != RUNNING:
        return False
    if wanted.state == FINISHED and summary.state == RUNNING:
        return False
    if wanted.agent and wanted.agent not in summary.agents:
        return False
    if wanted.participant and wanted.participant not in summary.agents:
        return False
    if wanted.team and wanted.team not in summary.teams:
        return False
    return not (wanted.workflow_id and wanted.workflow_id != summary.workflow_id)


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp
