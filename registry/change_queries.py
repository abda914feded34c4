"""Which change caused a regression (SessionInsights.ListChanges, `meshwarden changes`): the
request checked, the calls of its window summed per value where the store keeps them (its
change sides, one row per value: a million calls stay a few thousand rows; the calls
themselves only for capabilities whose route was set), or made from the receipts when the
store keeps none, and registry.session_changes run in a worker thread."""

from __future__ import annotations

import asyncio
import functools
from typing import Final

from meshwarden.clock import Clock
from meshwarden.registry import call_facts, session_changes
from meshwarden.registry.audit import Audit
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.outcomes import Outcomes
from meshwarden.registry.session_queries import ReceiptSource
from meshwarden.registry.store import SessionSignalStore
from meshwarden.v1 import session_insights_pb2

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
_FUTURE_S: Final = 366 * 24 * 3600.0
_ROUTE_ENTRIES: Final = 10_000  # route.set audit entries read per request, at most


class ChangeQueries:
    def __init__(
        self,
        receipts: ReceiptSource,
        outcomes: Outcomes,
        audit: Audit,
        sessions: SessionSignalStore | None,
        clock: Clock,
    ) -> None:
        # sessions: the call facts kept as receipts arrive; None reads every receipt instead
        self._receipts, self._outcomes, self._audit, self._sessions = receipts, outcomes, audit, sessions
        self._clock = clock

    async def list(self, request: session_insights_pb2.ListChangesRequest) -> session_insights_pb2.ListChangesResponse:
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
        route_sets = [e for e in await self._audit.list(since, _ROUTE_ENTRIES) if e.at < until]
        kind, subject, alpha = request.kind, request.subject, request.alpha or session_changes.DEFAULT_ALPHA
        if self._sessions is not None:  # summed where the call facts lie, as receipts arrived
            sides = await self._sessions.change_sides(since, until)
            routed = session_changes.route_capabilities(route_sets, request.subject)
            facts = await self._sessions.call_facts(since, until, routed) if routed else []
            outcomes = await self._outcomes.for_sessions({f.session_id for f in facts if f.session_id})
            found = await asyncio.to_thread(
                functools.partial(
                    session_changes.changes_of,
                    sides,
                    facts,
                    outcomes,
                    route_sets,
                    kind=kind,
                    subject=subject,
                    alpha=alpha,
                )
            )
        else:
            facts = await asyncio.to_thread(call_facts.facts_of, await self._receipts.between(since, until))
            outcomes = await self._outcomes.for_sessions({f.session_id for f in facts if f.session_id})
            found = await asyncio.to_thread(
                functools.partial(
                    session_changes.changes, facts, outcomes, route_sets, kind=kind, subject=subject, alpha=alpha
                )
            )
        if after is not None:
            found = [c for c in found if session_changes.position(c) < after]
        limit = request.limit or DEFAULT_LIMIT
        page = found[:limit]
        return session_insights_pb2.ListChangesResponse(
            changes=page, next_cursor=session_changes.cursor_after(page[-1]) if len(found) > limit else ""
        )
