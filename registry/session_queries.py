"""The registry's answers about sessions: report an outcome, list sessions, show one, cost
tables (the Receipts service's ReportOutcome, ListSessions, GetSession and Costs). Each takes
the request and the authorized caller (registry.rescue) and returns the response; the
arithmetic is in registry.session_views, the receipts come from the receipt store.

Listing sessions and costs read every receipt of a window, which can be many: the registry's
event loop also renews leases and feeds watchers, so the read gives the loop a turn every
READ_PAGE receipts and the arithmetic runs in a worker thread (it touches no database).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Final, Protocol

from google.protobuf import timestamp_pb2

from meshwarden.clock import Clock
from meshwarden.receipt_calls import calls_of
from meshwarden.registry import session_access, session_views
from meshwarden.registry.authz import Caller
from meshwarden.registry.errors import InvalidInput, PermissionDenied, UnknownSession
from meshwarden.registry.outcomes import Outcomes
from meshwarden.registry.session_views import SessionFilter
from meshwarden.v1 import receipts_pb2

# Far enough ahead that clock skew between a sidecar and the registry never hides a receipt.
_FUTURE_S: Final = 366 * 24 * 3600.0
READ_PAGE: Final = 500


class ReceiptSource(Protocol):
    """What the receipt store offers these queries (registry.receipt_store.ReceiptStore)."""

    def for_session(self, session_id: str) -> list[receipts_pb2.Receipt]: ...

    def between(self, since: float, until: float) -> Iterator[receipts_pb2.Receipt]: ...


class SessionQueries:
    def __init__(self, receipts: ReceiptSource, outcomes: Outcomes, clock: Clock) -> None:
        self._receipts, self._outcomes, self._clock = receipts, outcomes, clock

    def report_outcome(
        self, request: receipts_pb2.ReportOutcomeRequest, caller: Caller
    ) -> receipts_pb2.ReportOutcomeResponse:
        session_access.check_may_report(caller, request.session_id, self._receipts.for_session(request.session_id))
        assert caller.identity is not None  # checked just above; keeps the types honest
        self._outcomes.report(request.session_id, request.outcome, request.detail, reported_by=caller.identity.name)
        return receipts_pb2.ReportOutcomeResponse()

    async def list_sessions(
        self, request: receipts_pb2.ListSessionsRequest, caller: Caller
    ) -> receipts_pb2.ListSessionsResponse:
        wanted = SessionFilter.from_proto(request)
        if not session_access.sees_everything(caller):  # an agent: only the sessions it took part in
            wanted = dataclasses.replace(wanted, participant=session_access.agent_of(caller))
        since, until = self._window(
            request.since if request.HasField("since") else None, request.until if request.HasField("until") else None
        )
        receipts = await self._read(since, until)
        outcomes = self._outcomes.for_sessions(session_views.session_ids(receipts))
        sessions = await asyncio.to_thread(session_views.list_sessions, receipts, outcomes, wanted)
        return receipts_pb2.ListSessionsResponse(sessions=sessions)

    def get_session(self, request: receipts_pb2.GetSessionRequest, caller: Caller) -> receipts_pb2.GetSessionResponse:
        if not request.session_id:
            raise InvalidInput("session_id", "is required (meshwarden sessions list shows them)")
        receipts = self._receipts.for_session(request.session_id)
        outcome = self._outcomes.get(request.session_id)
        if not receipts and outcome is None:
            raise UnknownSession(request.session_id)
        session_access.check_may_read(caller, request.session_id, receipts)
        calls = calls_of(receipts)
        return receipts_pb2.GetSessionResponse(
            summary=session_views.summarize(request.session_id, calls, outcome),
            outcome_detail=outcome.detail if outcome is not None else "",
            receipts=receipts,
        )

    async def costs(self, request: receipts_pb2.CostsRequest, caller: Caller) -> receipts_pb2.CostsResponse:
        if not session_access.sees_everything(caller):  # the table says OPERATOR; say it again here
            raise PermissionDenied(f"costs span every agent: they are for operators (the operator token), not {caller}")
        by = request.by or "agent"
        if by not in session_views.COST_KEYS:
            raise InvalidInput("by", f"is {by!r}; group costs by one of {', '.join(session_views.COST_KEYS)}")
        since, until = self._window(request.since if request.HasField("since") else None, None)
        receipts = await self._read(since, until)
        outcomes = self._outcomes.for_sessions(session_views.session_ids(receipts))
        rows = await asyncio.to_thread(session_views.cost_rows, receipts, outcomes, by)
        return receipts_pb2.CostsResponse(rows=rows)

    async def _read(self, since: float, until: float) -> list[receipts_pb2.Receipt]:
        """The window's receipts, giving the event loop a turn every READ_PAGE of them."""
        receipts: list[receipts_pb2.Receipt] = []
        for receipt in self._receipts.between(since, until):
            receipts.append(receipt)
            if len(receipts) % READ_PAGE == 0:
                await asyncio.sleep(0)
        return receipts

    def _window(
        self, since: timestamp_pb2.Timestamp | None, until: timestamp_pb2.Timestamp | None
    ) -> tuple[float, float]:
        """[since, until) in Unix seconds; open ends reach back to the start and far ahead."""
        start = _seconds(since) if since is not None else 0.0
        end = _seconds(until) if until is not None else self._clock.wall() + _FUTURE_S
        if end <= start:
            raise InvalidInput("until", "is not after since; give a window that ends after it starts")
        return start, end


def _seconds(stamp: timestamp_pb2.Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9
