"""The registry's answers about sessions: report an outcome, list sessions, show one, cost
tables (the Receipts service's ReportOutcome, ListSessions, GetSession and Costs). Each takes
the request and the authorized caller (registry.authz) and returns the response; the
arithmetic is in registry.session_views, the receipts come from the receipt store.

Without a time window, listing sessions and costs read the session aggregates the receipt
store keeps as receipts arrive (registry.store.SessionStore): one row per session, however
many receipts there are. With a window they read every receipt of it, which can be many, and
a session can hold thousands: the registry's event loop also renews leases and feeds
watchers, so the stores read in their own threads and the arithmetic runs in a worker thread
(it touches no database).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Final, Protocol

from google.protobuf import timestamp_pb2

from meshwarden.clock import Clock
from meshwarden.receipt_calls import calls_of
from meshwarden.registry import session_access, session_principal, session_views
from meshwarden.registry.authz import Caller
from meshwarden.registry.errors import InvalidInput, PermissionDenied, UnknownSession
from meshwarden.registry.outcomes import Outcomes, StoredOutcome
from meshwarden.registry.session_views import SessionFilter
from meshwarden.registry.store import SessionStore
from meshwarden.v1 import receipts_pb2

# Far enough ahead that clock skew between a sidecar and the registry never hides a receipt.
_FUTURE_S: Final = 366 * 24 * 3600.0


class ReceiptSource(Protocol):
    """What the receipts offer these queries (registry.receipts.Receipts)."""

    async def for_session(self, session_id: str) -> Sequence[receipts_pb2.Receipt]: ...

    async def between(self, since: float, until: float) -> Sequence[receipts_pb2.Receipt]: ...


class SessionQueries:
    def __init__(
        self, receipts: ReceiptSource, outcomes: Outcomes, sessions: SessionStore | None, clock: Clock
    ) -> None:
        # sessions: the per-session totals (both stores keep them); None reads every receipt instead
        self._receipts, self._outcomes, self._sessions, self._clock = receipts, outcomes, sessions, clock

    async def report_outcome(
        self, request: receipts_pb2.ReportOutcomeRequest, caller: Caller
    ) -> receipts_pb2.ReportOutcomeResponse:
        receipts = await self._receipts.for_session(request.session_id)
        session_access.check_may_report(caller, request.session_id, receipts)
        assert caller.identity is not None  # checked just above; keeps the types honest
        await self._outcomes.report(
            request.session_id, request.outcome, request.detail, reported_by=caller.identity.name
        )
        return receipts_pb2.ReportOutcomeResponse()

    async def list_sessions(
        self, request: receipts_pb2.ListSessionsRequest, caller: Caller
    ) -> receipts_pb2.ListSessionsResponse:
        wanted = SessionFilter.from_proto(request)
        if not session_access.sees_everything(caller):  # an agent: only the sessions it took part in
            wanted = dataclasses.replace(wanted, participant=session_access.agent_of(caller))
        if self._sessions is not None and not request.HasField("since") and not request.HasField("until"):
            listed = await self._sessions.find(wanted.as_query())
            found = [session_principal.fill(session_views.summary_of(s.aggregate, s.outcome), s.principal) for s in listed]
        else:
            since, until = self._window(
                request.since if request.HasField("since") else None,
                request.until if request.HasField("until") else None,
            )
            receipts = await self._receipts.between(since, until)
            outcomes = await self._outcomes.for_sessions(session_views.session_ids(receipts))
            found = await asyncio.to_thread(session_views.list_sessions, receipts, outcomes, wanted)
        more = len(found) == wanted.limit
        return receipts_pb2.ListSessionsResponse(
            sessions=found, next_cursor=session_views.cursor_after(found[-1]) if more and found else ""
        )

    async def get_session(
        self, request: receipts_pb2.GetSessionRequest, caller: Caller
    ) -> receipts_pb2.GetSessionResponse:
        if not request.session_id:
            raise InvalidInput("session_id", "is required (meshwarden sessions list shows them)")
        receipts = await self._receipts.for_session(request.session_id)
        outcome = await self._outcomes.get(request.session_id)
        if not receipts and outcome is None:
            raise UnknownSession(request.session_id)
        session_access.check_may_read(caller, request.session_id, receipts)
        return await asyncio.to_thread(_session_response, request.session_id, receipts, outcome)

    async def costs(self, request: receipts_pb2.CostsRequest, caller: Caller) -> receipts_pb2.CostsResponse:
        if not session_access.sees_everything(caller):  # the table says OPERATOR; say it again here
            raise PermissionDenied(f"costs span every agent: they are for operators (the operator token), not {caller}")
        by = request.by or "agent"
        if by not in session_views.COST_KEYS:
            raise InvalidInput("by", f"is {by!r}; group costs by one of {', '.join(session_views.COST_KEYS)}")
        if self._sessions is not None and not request.HasField("since") and not request.HasField("until"):
            totals = await self._sessions.cost_totals(by)
            return receipts_pb2.CostsResponse(rows=session_views.cost_rows_of(totals))
        since, until = self._window(
            request.since if request.HasField("since") else None, request.until if request.HasField("until") else None
        )
        receipts = await self._receipts.between(since, until)
        outcomes = await self._outcomes.for_sessions(session_views.session_ids(receipts))
        rows = await asyncio.to_thread(session_views.cost_rows, receipts, outcomes, by)
        return receipts_pb2.CostsResponse(rows=rows)

    def _window(
        self, since: timestamp_pb2.Timestamp | None, until: timestamp_pb2.Timestamp | None
    ) -> tuple[float, float]:
        """[since, until) in Unix seconds; open ends reach back to the start and far ahead."""
        start = _seconds(since) if since is not None else 0.0
        end = _seconds(until) if until is not None else self._clock.wall() + _FUTURE_S
        if end <= start:
            raise InvalidInput("until", "is not after since; give a window that ends after it starts")
        return start, end


def _session_response(
    session_id: str, receipts: Sequence[receipts_pb2.Receipt], outcome: StoredOutcome | None
) -> receipts_pb2.GetSessionResponse:
    return receipts_pb2.GetSessionResponse(
        summary=session_principal.fill(
            session_views.summarize(session_id, calls_of(receipts), outcome),
            session_principal.principal_of(session_id, receipts),
        ),
        outcome_detail=outcome.detail if outcome is not None else "",
        receipts=receipts,
    )


def _seconds(stamp: timestamp_pb2.Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9
