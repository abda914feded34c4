"""Sessions and costs, computed from stored receipts (as calls, meshwarden.receipt_calls) and
session outcomes. Pure functions: the servicer (registry.sessions_server) fetches the receipts
of a time window from the receipt store and the outcomes of the sessions they name.

Choices the issue leaves open, made here:
- A session is "running" until one of its agents reports an outcome, then "finished"; its
  outcome ("succeeded", "failed", "abandoned") can be asked for as a state too.
- Lists page with a keyset cursor over (last activity, session id), newest first, or oldest
  first for stuck work (the longest idle running sessions on top).
- A call failed when its status is not OK; spend "on failed sessions" is the spend of the
  sessions whose outcome is failed or abandoned.
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

from meshwarden import session_labels
from meshwarden.identifiers import identifier_problem
from meshwarden.receipt_calls import ReceiptCall, calls_of
from meshwarden.registry import session_principal
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.outcomes import StoredOutcome
from meshwarden.registry.store.records import CostTotal, SessionAggregate, SessionQuery
from meshwarden.v1 import receipts_pb2

RUNNING: Final = "running"
FINISHED: Final = "finished"
SUCCEEDED: Final = "succeeded"
NEWEST: Final = "newest"
OLDEST: Final = "oldest"
STATES: Final = ("", RUNNING, FINISHED, SUCCEEDED, "failed", "abandoned")
_FAILED_OUTCOMES: Final = ("failed", "abandoned")
_CURSOR_MAX: Final = 400
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000

COST_KEYS: Final[Mapping[str, Callable[[ReceiptCall], str]]] = {
    "agent": lambda c: c.spender_agent,  # a model call's spend is its caller's
    "team": lambda c: c.spender_team,
    "workflow": lambda c: c.workflow_id,
    "capability": lambda c: c.capability,
    "model": lambda c: c.usage.model if c.usage is not None else "",
    "provider": lambda c: c.model_provider,
    # which version of an agent did the work (regressions after a release show here)
    "version": lambda c: f"{c.spender_agent}@{c.version}" if c.version else c.spender_agent,
    "caller": lambda c: f"{c.caller_agent} -> {c.callee_agent or c.capability}",
    "agent-model": lambda c: f"{c.spender_agent} x {c.usage.model if c.usage is not None else ''}",
    "refusal": lambda c: refusal_cause(c),
}
_REFUSED_BY_KIND: Final = {
    "budget_exhausted": "budget",
    "approval_pending": "approval pending",
    "approval_denied": "approval denied",
}
NOT_REFUSED: Final = "(not refused)"


def refusal_cause(call: ReceiptCall) -> str:
    """What refused a call or changed it: a kill switch (its id), a budget (its id when the
    receipt names it), an approval, a policy (its ids), or a budget that made it run on a
    cheaper model ("downgrade by budget B-1")."""
    if call.kill_switch_id or call.error_kind == "killed":
        return f"kill switch {call.kill_switch_id or '?'}"
    if call.error_kind == "budget_exhausted" and call.budget_short:
        return f"budget {call.budget_short}"
    if call.error_kind in _REFUSED_BY_KIND:
        return _REFUSED_BY_KIND[call.error_kind]
    if call.policy_decision == "deny" or call.error_kind == "policy_denied":
        return f"policy {','.join(call.policy_ids) or '(no policy id)'}"
    if call.budget_downgraded_to:
        return f"downgrade by budget {call.budget_short or '?'}"
    return NOT_REFUSED


OK: Final = "OK"


def failed(call: ReceiptCall) -> bool:
    """A call that did not end OK (refused, timed out, failed in the handler)."""
    return call.status != OK


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionFilter:
    state: str = ""  # "", "running", "finished" or an outcome
    agent: str = ""
    team: str = ""
    workflow_id: str = ""
    limit: int = DEFAULT_LIMIT
    oldest_first: bool = False
    after: tuple[float, str] | None = None
    # Set by the registry (never from the request) when an agent asks: only its own sessions.
    participant: str = ""
    started_for: str = ""  # only the sessions started for this principal
    labels: tuple[tuple[str, str], ...] = ()  # only the sessions started with every one of these

    @classmethod
    def from_proto(cls, request: receipts_pb2.ListSessionsRequest) -> SessionFilter:
        if request.state not in STATES:
            raise InvalidInput(
                "state", f"is {request.state!r}; it must be one of {', '.join(STATES[1:])} or empty (all)"
            )
        if request.limit > MAX_LIMIT:
            raise InvalidInput("limit", f"is {request.limit}; at most {MAX_LIMIT} sessions per request")
        if request.order not in ("", NEWEST, OLDEST):
            raise InvalidInput("order", f"is {request.order!r}; it must be {NEWEST!r} or {OLDEST!r}")
        return cls(
            state=request.state,
            agent=request.agent,
            team=request.team,
            workflow_id=request.workflow_id,
            limit=request.limit or DEFAULT_LIMIT,
            oldest_first=request.order == OLDEST,
            after=_parse_cursor(request.cursor) if request.cursor else None,
            started_for=_principal(request.started_for),
            labels=_labels(request.labels),
        )

    def as_query(self) -> SessionQuery:
        return SessionQuery(
            state=self.state,
            agent=self.agent,
            team=self.team,
            workflow_id=self.workflow_id,
            participant=self.participant,
            oldest_first=self.oldest_first,
            after=self.after,
            limit=self.limit,
            started_for=self.started_for,
            labels=self.labels,
        )


@dataclass(slots=True)
class _Session:
    session_id: str
    calls: list[ReceiptCall] = field(default_factory=list)


def list_sessions(
    receipts: Iterable[receipts_pb2.Receipt], outcomes: Mapping[str, StoredOutcome], wanted: SessionFilter
) -> list[receipts_pb2.SessionSummary]:
    """The sessions the receipts show, filtered, newest activity first, at most `wanted.limit`."""
    receipts = list(receipts)
    principals = session_principal.by_session(receipts)
    summaries = [
        session_principal.fill(
            summarize(s.session_id, s.calls, outcomes.get(s.session_id)), principals.get(s.session_id)
        )
        for s in _sessions(receipts)
    ]
    kept = [s for s in summaries if _matches(s, wanted)]
    kept.sort(key=_position, reverse=not wanted.oldest_first)
    if wanted.after is not None:
        after = wanted.after
        kept = [s for s in kept if (_position(s) > after if wanted.oldest_first else _position(s) < after)]
    return kept[: wanted.limit]


def summary_of(found: SessionAggregate, outcome: StoredOutcome | None) -> receipts_pb2.SessionSummary:
    """The summary of a session from its stored aggregate (registry.store.SessionStore)."""
    return receipts_pb2.SessionSummary(
        session_id=found.session_id,
        workflow_id=found.workflow_id,
        state=outcome.outcome if outcome is not None else RUNNING,
        agents=found.agents,
        teams=found.teams,
        calls=found.calls,
        failures=found.failures,
        cost_micro_usd=found.cost_micro_usd,
        input_tokens=found.input_tokens,
        output_tokens=found.output_tokens,
        started_at=_timestamp(found.started_at),
        last_activity_at=_timestamp(max(found.last_activity_at, outcome.reported_at if outcome is not None else 0.0)),
    )


def cursor_after(summary: receipts_pb2.SessionSummary) -> str:
    """The cursor that continues a list after `summary` (opaque to clients)."""
    activity, session_id = _position(summary)
    return f"{activity!r}:{session_id}"


def _principal(text: str) -> str:
    problem = identifier_problem("on_behalf_of", text)
    if problem is not None:
        raise InvalidInput("started_for", problem)
    return text


def _labels(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    try:
        return session_labels.checked(labels)
    except session_labels.InvalidLabels as exc:
        raise InvalidInput("labels", exc.message) from None


def _parse_cursor(text: str) -> tuple[float, str]:
    activity, _, session_id = text.partition(":")
    try:
        if len(text) > _CURSOR_MAX or not session_id:
            raise ValueError(text)
        return float(activity), session_id
    except ValueError:
        raise InvalidInput("cursor", "is not one this registry gave; pass a list's next_cursor unchanged") from None


def _position(summary: receipts_pb2.SessionSummary) -> tuple[float, str]:
    return summary.last_activity_at.ToNanoseconds() / 1e9, summary.session_id


def cost_rows_of(totals: Iterable[CostTotal]) -> list[receipts_pb2.CostRow]:
    """The cost table from the store's totals, the biggest spend first."""
    rows = [
        receipts_pb2.CostRow(
            key=t.key,
            cost_micro_usd=t.cost_micro_usd,
            calls=t.calls,
            successful_outcomes=t.successful_outcomes,
            cost_per_successful_outcome_micro_usd=_per_success(t.cost_micro_usd, t.successful_outcomes),
            failures=t.failures,
            input_tokens=t.input_tokens,
            output_tokens=t.output_tokens,
            sessions=t.sessions,
            failed_session_cost_micro_usd=t.failed_session_cost_micro_usd,
        )
        for t in totals
    ]
    rows.sort(key=lambda r: (-r.cost_micro_usd, r.key))
    return rows


def _per_success(total: int, successes: int) -> int:
    return (total + successes // 2) // successes if successes else 0


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
        failures=sum(1 for c in calls if failed(c)),
        cost_micro_usd=sum(c.cost_micro_usd for c in calls),
        input_tokens=sum(c.usage.input_tokens for c in calls if c.usage is not None),
        output_tokens=sum(c.usage.output_tokens for c in calls if c.usage is not None),
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
    totals: dict[str, list[int]] = {}  # calls, failures, spend, input tokens, output tokens
    spend_by_session: dict[str, dict[str, int]] = {}
    for call in calls_of(receipts):
        key = key_of(call)
        row = totals.setdefault(key, [0, 0, 0, 0, 0])
        row[0] += 1
        row[1] += failed(call)
        row[2] += call.cost_micro_usd
        row[3] += call.usage.input_tokens if call.usage is not None else 0
        row[4] += call.usage.output_tokens if call.usage is not None else 0
        if call.session_id:
            by_session = spend_by_session.setdefault(key, {})
            by_session[call.session_id] = by_session.get(call.session_id, 0) + call.cost_micro_usd
    found = []
    for key, (calls, failures, spend, input_tokens, output_tokens) in totals.items():
        sessions = spend_by_session.get(key, {})
        ended = {s: o.outcome for s in sessions if (o := outcomes.get(s)) is not None}
        found.append(
            CostTotal(
                key=key,
                calls=calls,
                failures=failures,
                cost_micro_usd=spend,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                sessions=len(sessions),
                successful_outcomes=sum(1 for o in ended.values() if o == SUCCEEDED),
                failed_session_cost_micro_usd=sum(sessions[s] for s, o in ended.items() if o in _FAILED_OUTCOMES),
            )
        )
    return cost_rows_of(found)


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
    if wanted.state not in ("", RUNNING, FINISHED) and summary.state != wanted.state:
        return False
    if wanted.agent and wanted.agent not in summary.agents:
        return False
    if wanted.participant and wanted.participant not in summary.agents:
        return False
    if wanted.team and wanted.team not in summary.teams:
        return False
    if wanted.started_for and wanted.started_for != summary.started_for:
        return False
    if any(summary.labels.get(key) != value for key, value in wanted.labels):
        return False
    return not (wanted.workflow_id and wanted.workflow_id != summary.workflow_id)


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp
