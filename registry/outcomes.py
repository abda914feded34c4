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
from dataclasses import dataclass
from typing import Final

from meshwarden import outcomes
from meshwarden.clock import Clock, iso_utc
from meshwarden.registry.errors import Conflict, InvalidInput
from meshwarden.registry.store import Store

log = logging.getLogger(__name__)

_QUERY_CHUNK: Final = 500  # SQLite's default limit on host parameters is 999


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredOutcome:
    session_id: str
    outcome: str
    detail: str
    reported_by: str  # the agent whose sidecar reported it (from its SVID)
    reported_at: float


class Outcomes:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store, self._clock = store, clock

    def report(self, session_id: str, outcome: str, detail: str, *, reported_by: str) -> StoredOutcome:
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
        with self._store.transaction() as db:
            first = db.execute(
                "SELECT outcome, reported_by, reported_at FROM session_outcomes WHERE session_id = ?", (session_id,)
            ).fetchone()
            if first is None:
                db.execute(
                    "INSERT INTO session_outcomes (session_id, outcome, detail, reported_by, reported_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (session_id, outcome, detail, reported_by, stored.reported_at),
                )
        if first is not None:
            raise Conflict(
                f"session {session_id} already has its outcome: {first[0]}, reported by {first[1]} at "
                f"{iso_utc(first[2])}; an outcome is reported once (see meshwarden session show {session_id})"
            )
        log.info("session %s %s (reported by %s)", session_id, outcome, reported_by)
        return stored

    def get(self, session_id: str) -> StoredOutcome | None:
        return self.for_sessions([session_id]).get(session_id)

    def for_sessions(self, session_ids: Iterable[str]) -> Mapping[str, StoredOutcome]:
        """The outcomes of those sessions that have one (primary-key lookups, in chunks)."""
        ids = sorted(set(session_ids))
        found: dict[str, StoredOutcome] = {}
        for start in range(0, len(ids), _QUERY_CHUNK):
            chunk = ids[start : start + _QUERY_CHUNK]
            rows = self._store.query(
                "SELECT session_id, outcome, detail, reported_by, reported_at FROM session_outcomes "
                f"WHERE session_id IN ({','.join('?' * len(chunk))})",
                tuple(chunk),
            )
            for row in rows:
                found[row[0]] = StoredOutcome(
                    session_id=row[0], outcome=row[1], detail=row[2], reported_by=row[3], reported_at=row[4]
                )
        return found
