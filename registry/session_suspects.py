"""Which running sessions look stuck, looping or burning money (SessionInsights.
ListSuspectSessions, `meshwarden sessions suspect`, and the gauge the registry exports).

Both stores answer from one row per session: the signals (registry.session_signals) are kept
beside each session's aggregate as receipts arrive. A store that kept none would have the same
answer computed from every stored receipt in a worker thread: correct, slower.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Final

from meshwarden.clock import Clock
from meshwarden.receipt_calls import calls_of
from meshwarden.registry import session_principal, session_signals, session_views
from meshwarden.registry.errors import InvalidInput, StoreError
from meshwarden.registry.outcomes import Outcomes, StoredOutcome
from meshwarden.registry.session_queries import ReceiptSource
from meshwarden.registry.store import SessionSignalStore
from meshwarden.registry.store.records import SessionSignals, SuspectThresholds
from meshwarden.v1 import receipts_pb2, session_insights_pb2

log = logging.getLogger(__name__)

GAUGE_EVERY_S: Final = 15.0  # how often the gauge's counts are taken (a scrape reads the last ones)
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
_FUTURE_S: Final = 366 * 24 * 3600.0


class SessionSuspects:
    def __init__(
        self, receipts: ReceiptSource, outcomes: Outcomes, sessions: SessionSignalStore | None, clock: Clock
    ) -> None:
        self._receipts, self._outcomes, self._sessions, self._clock = receipts, outcomes, sessions, clock
        # Running sessions per reason under the default thresholds, as last counted: what the
        # meshwarden_sessions_suspect gauge shows (a scrape touches no database).
        self.counted: dict[str, int] = {}

    async def list(
        self, request: session_insights_pb2.ListSuspectSessionsRequest
    ) -> session_insights_pb2.ListSuspectSessionsResponse:
        limits = session_signals.thresholds_of(request)
        if request.limit > MAX_LIMIT:
            raise InvalidInput("limit", f"is {request.limit}; at most {MAX_LIMIT} sessions per request")
        limit = request.limit or DEFAULT_LIMIT
        after = _cursor(request.cursor) if request.cursor else None
        now = self._clock.wall()
        if self._sessions is not None:
            stored = await self._sessions.suspects(limits, now, after, limit, request.reason)
            found = [
                _suspect(
                    session_principal.fill(
                        session_views.summary_of(s.listed.aggregate, s.listed.outcome), s.listed.principal
                    ),
                    s.signals,
                    now,
                    limits,
                )
                for s in stored
            ]
        else:
            receipts = await self._receipts.between(0.0, now + _FUTURE_S)
            outcomes = await self._outcomes.for_sessions(session_views.session_ids(receipts))
            found = await asyncio.to_thread(_from_receipts, receipts, outcomes, now, limits, request.reason)
            found = [s for s in found if after is None or _position(s) > after][:limit]
        more = len(found) == limit
        return session_insights_pb2.ListSuspectSessionsResponse(
            sessions=found,
            next_cursor=session_views.cursor_after(found[-1].summary) if more and found else "",
        )

    async def count_forever(self, every_s: float = GAUGE_EVERY_S) -> None:
        """Counts the suspects per reason every `every_s` for the gauge, while the registry runs
        (with the session aggregates only: without them a count reads every receipt)."""
        if self._sessions is None:
            return
        store_answers = True
        while True:
            try:
                self.counted = await self._sessions.suspect_counts(session_signals.DEFAULTS, self._clock.wall())
            except StoreError as exc:  # the database is away (PostgreSQL restarting): keep the last count
                if store_answers:
                    log.warning("cannot count suspect sessions (%s): the gauge keeps its last count", exc)
                store_answers = False
            else:
                store_answers = True
            await asyncio.sleep(every_s)


def _suspect(
    summary: receipts_pb2.SessionSummary,
    signals: SessionSignals,
    now: float,
    limits: SuspectThresholds,
) -> session_insights_pb2.SuspectSession:
    return session_insights_pb2.SuspectSession(
        summary=summary,
        reasons=session_signals.reasons(
            signals,
            cost_micro_usd=summary.cost_micro_usd,
            last_activity_at=summary.last_activity_at.ToNanoseconds() / 1e9,
            now=now,
            limits=limits,
        ),
        max_repeats=signals.max_repeats,
        repeated_capability=signals.repeated_capability,
        retries=signals.retries,
        successes=signals.successes,
    )


def _from_receipts(
    receipts: Sequence[receipts_pb2.Receipt],
    outcomes: Mapping[str, StoredOutcome],
    now: float,
    limits: SuspectThresholds,
    reason: str,
) -> list[session_insights_pb2.SuspectSession]:
    grouped: dict[str, list[receipts_pb2.Receipt]] = {}
    for receipt in receipts:
        if receipt.session_id and receipt.session_id not in outcomes:
            grouped.setdefault(receipt.session_id, []).append(receipt)
    found = []
    for session_id, own in grouped.items():
        summary = session_principal.fill(
            session_views.summarize(session_id, calls_of(own), None), session_principal.principal_of(session_id, own)
        )
        suspect = _suspect(summary, session_signals.signals_of(session_id, own), now, limits)
        if suspect.reasons and (not reason or reason in suspect.reasons):
            found.append(suspect)
    found.sort(key=_position)
    return found


def _position(suspect: session_insights_pb2.SuspectSession) -> tuple[float, str]:
    return suspect.summary.last_activity_at.ToNanoseconds() / 1e9, suspect.summary.session_id


def _cursor(text: str) -> tuple[float, str]:
    request = receipts_pb2.ListSessionsRequest(cursor=text)
    found = session_views.SessionFilter.from_proto(request).after
    assert found is not None  # a non-empty cursor parses or raises InvalidInput
    return found
