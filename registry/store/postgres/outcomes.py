"""Session outcomes in PostgreSQL (`session_outcomes`, one row per session; the first report
stands: `ON CONFLICT DO NOTHING` decides it, whichever replica each report reached). A new
outcome is copied into the session's aggregate under the session's lock (.sessions)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from meshwarden.registry.store.postgres.database import Connection, Database
from meshwarden.registry.store.postgres.sessions import lock_sessions, note_outcome
from meshwarden.registry.store.records import StoredOutcome

_COLUMNS: Final = "session_id, outcome, detail, reported_by, reported_at"


class PostgresOutcomes:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_first(self, outcome: StoredOutcome) -> StoredOutcome | None:
        async def work(connection: Connection) -> StoredOutcome | None:
            await lock_sessions(connection, [outcome.session_id])
            inserted = await connection.execute(
                f"INSERT INTO session_outcomes ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (session_id) DO NOTHING",
                outcome.session_id,
                outcome.outcome,
                outcome.detail,
                outcome.reported_by,
                outcome.reported_at,
            )
            if inserted == "INSERT 0 1":
                await note_outcome(connection, outcome.session_id, outcome.outcome, outcome.reported_at)
                return None
            first = await connection.fetchrow(
                f"SELECT {_COLUMNS} FROM session_outcomes WHERE session_id = $1", outcome.session_id
            )
            return _outcome(first)

        return await self._db.write(work)

    async def for_sessions(self, session_ids: Iterable[str]) -> Mapping[str, StoredOutcome]:
        ids = sorted(set(session_ids))

        async def work(connection: Connection) -> Mapping[str, StoredOutcome]:
            rows = await connection.fetch(
                f"SELECT {_COLUMNS} FROM session_outcomes WHERE session_id = ANY($1::text[])", ids
            )
            return {r[0]: _outcome(r) for r in rows}

        return await self._db.read(work)


def _outcome(row: Any) -> StoredOutcome:
    return StoredOutcome(session_id=row[0], outcome=row[1], detail=row[2], reported_by=row[3], reported_at=row[4])
