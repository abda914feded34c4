"""Session outcomes in SQLite (`session_outcomes`, one row per session; the first report stands)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from typing import Final

from meshwarden.registry.store.records import StoredOutcome
from meshwarden.registry.store.sqlite.database import Database
from meshwarden.registry.store.sqlite.sessions import note_outcome

_QUERY_CHUNK: Final = 500  # SQLite's default limit on host parameters is 999
_COLUMNS: Final = "session_id, outcome, detail, reported_by, reported_at"


class SqliteOutcomes:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_first(self, outcome: StoredOutcome) -> StoredOutcome | None:
        def work(db: sqlite3.Connection) -> StoredOutcome | None:
            first = db.execute(
                f"SELECT {_COLUMNS} FROM session_outcomes WHERE session_id = ?", (outcome.session_id,)
            ).fetchone()
            if first is not None:
                return _outcome(first)
            db.execute(
                f"INSERT INTO session_outcomes ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (outcome.session_id, outcome.outcome, outcome.detail, outcome.reported_by, outcome.reported_at),
            )
            note_outcome(db, outcome.session_id, outcome.outcome, outcome.reported_at)
            return None

        return await self._db.write(work)

    async def for_sessions(self, session_ids: Iterable[str]) -> Mapping[str, StoredOutcome]:
        ids = sorted(set(session_ids))

        def work(db: sqlite3.Connection) -> Mapping[str, StoredOutcome]:
            found: dict[str, StoredOutcome] = {}
            for start in range(0, len(ids), _QUERY_CHUNK):
                chunk = ids[start : start + _QUERY_CHUNK]
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM session_outcomes WHERE session_id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                for row in rows:
                    found[row[0]] = _outcome(row)
            return found

        return await self._db.read(work)


def _outcome(row: tuple[str, str, str, str, float]) -> StoredOutcome:
    return StoredOutcome(session_id=row[0], outcome=row[1], detail=row[2], reported_by=row[3], reported_at=row[4])
