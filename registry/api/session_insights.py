"""The SessionInsights service's RPCs (ListSuspectSessions, ListChanges): operators' questions
7 and 10, answered by registry.session_suspects and registry.session_changes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

import grpc

from meshwarden.clock import Clock
from meshwarden.registry import call_facts, session_changes
from meshwarden.registry.api.service import Handler
from meshwarden.registry.audit import Audit
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.outcomes import Outcomes
from meshwarden.registry.session_queries import ReceiptSource
from meshwarden.registry.session_suspects import SessionSuspects
from meshwarden.registry.store import SessionStore
from meshwarden.v1 import session_insights_pb2

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
_FUTURE_S: Final = 366 * 24 * 3600.0
_ROUTE_ENTRIES: Final = 10_000  # route.set audit entries read per request, at most

Context = grpc.aio.ServicerContext[Any, Any]


class SessionInsightsApi:
    def __init__(
        self,
        suspects: SessionSuspects,
        receipts: ReceiptSource,
        outcomes: Outcomes,
        audit: Audit,
        clock: Clock,
        sessions: SessionStore | None,
    ) -> None:
        self._suspects, self._receipts, self._outcomes, self._audit = suspects, receipts, outcomes, audit
        self._clock, self._sessions = clock, sessions  # sessions: None reads every receipt instead

    def handlers(self) -> Mapping[str, Handler]:
        return {"ListSuspectSessions": self.ListSuspectSessions, "ListChanges": self.ListChanges}

    async def ListSuspectSessions(
        self, request: session_insights_pb2.ListSuspectSessionsRequest, _: Context
    ) -> session_insights_pb2.ListSuspectSessionsResponse:
        return await self._suspects.list(request)

    async def ListChanges(
        self, request: session_insights_pb2.ListChangesRequest, _: Context
    ) -> session_insights_pb2.ListChangesResponse:
        if request.kind and request.kind not in session_changes.KINDS:
            raise InvalidInput("kind", f"is {request.kind!r}; one of {', '.join(session_changes.KINDS)} or empty")
        if not 0 <= request.alpha < 0.5:
            raise InvalidInput(
                "alpha", f"must be above 0 and below 0.5 (0: {session_changes.DEFAULT_ALPHA}), got {request.alpha}"
            )
        if request.limit > MAX_LIMIT:
            raise InvalidInput("limit", f"is {request.limit}; at most {MAX_LIMIT} changes per request")
        after = session_changes.parse_cursor(request.cursor) if request.cursor else None
        since = request.since.ToNanoseconds() / 1e9 if request.HasField("since") else 0.0
        until = request.until.ToNanoseconds() / 1e9 if request.HasField("until") else self._clock.wall() + _FUTURE_S
        if until <= since:
            raise InvalidInput("until", "is not after since; give a window that ends after it starts")
        if self._sessions is not None:  # one small row per call, kept as receipts arrive
            facts = await self._sessions.call_facts(since, until)
        else:
            facts = await asyncio.to_thread(call_facts.facts_of, await self._receipts.between(since, until))
        outcomes = await self._outcomes.for_sessions({f.session_id for f in facts if f.session_id})
        route_sets = [e for e in await self._audit.list(since, _ROUTE_ENTRIES) if e.at < until]
        found = await asyncio.to_thread(
            session_changes.changes,
            facts,
            outcomes,
            route_sets,
            kind=request.kind,
            subject=request.subject,
            alpha=request.alpha or session_changes.DEFAULT_ALPHA,
        )
        if after is not None:
            found = [c for c in found if session_changes.position(c) < after]
        limit = request.limit or DEFAULT_LIMIT
        page = found[:limit]
        return session_insights_pb2.ListChangesResponse(
            changes=page, next_cursor=session_changes.cursor_after(page[-1]) if len(found) > limit else ""
        )
