"""Session outcomes: how a session ended ("succeeded", "failed", "abandoned"), as one of its
agents reported it through its sidecar (Receipts.ReportOutcome).

The first report stands and later ones are refused (Conflict, naming the first): an outcome
is evidence, and "cost per successful outcome" would be worth little if an agent could turn a
failure into a success after the fact. A report that was stored but whose answer was lost is
refused on retry with the stored outcome in the message, which tells the agent it landed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from meshwarden import outcomes
from meshwarden.clock import Clock, iso_utc
from meshwarden.registry.errors import Conflict, InvalidInput
from meshwarden.registry.store import OutcomeStore
from meshwarden.registry.store.records import StoredOutcome

log = logging.getLogger(__name__)

__all__ = ["Outcomes", "StoredOutcome"]


class Outcomes:
    def __init__(self, store: OutcomeStore, clock: Clock) -> None:
        self._store, self._clock = store, clock

    async def report(self, session_id: str, outcome: str, detail: str, *, reported_by: str) -> StoredOutcome:
        found = outcomes.problem(session_id, outcome, detail)
        if found is not None:
            raise InvalidInput(*found)
        stored = StoredOutcome(
            session_id=session_id,
            outcome=outcome,
            detail=detail,
            reported_by=reported_by,
            reported_at=self._clock.wall(),
        )
        first = await self._store.add_first(stored)
        if first is not None:
            raise Conflict(
                f"session {session_id} already has its outcome: {first.outcome}, reported by {first.reported_by} at "
                f"{iso_utc(first.reported_at)}; an outcome is reported once (see meshwarden session show {session_id})"
            )
        log.info("session %s %s (reported by %s)", session_id, outcome, reported_by)
        return stored

    async def get(self, session_id: str) -> StoredOutcome | None:
        return (await self.for_sessions([session_id])).get(session_id)

    async def for_sessions(self, session_ids: Iterable[str]) -> Mapping[str, StoredOutcome]:
        """The outcomes of those sessions that have one."""
        return await self._store.for_sessions(session_ids)
