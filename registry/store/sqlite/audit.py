"""The audit log in SQLite (`audit_log`), and the insert other stores use to commit an entry
inside their own transaction."""

from __future__ import annotations

import sqlite3
from typing import Any, Final

from meshwarden.registry.store.records import AuditEntry
from meshwarden.registry.store.sqlite.database import Database

_COLUMNS: Final = "id, at, actor, claimed_user, action, target, reason, detail"


class SqliteAudit:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, entry: AuditEntry) -> None:
        await self._db.write(lambda db: append(db, entry))

    async def before(self, before_id: int, limit: int) -> list[AuditEntry]:
        def work(db: sqlite3.Connection) -> list[AuditEntry]:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?",
                (before_id if before_id > 0 else 2**63 - 1, limit),
            ).fetchall()
            return [_entry(r) for r in rows]

        return await self._db.read(work)

    async def list(self, since: float, limit: int, before_id: int = 0) -> list[AuditEntry]:
        def work(db: sqlite3.Connection) -> list[AuditEntry]:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM audit_log WHERE at >= ? AND id < ? ORDER BY id DESC LIMIT ?",
                (since, before_id if before_id > 0 else 2**63 - 1, limit),
            ).fetchall()
            return [_entry(r) for r in reversed(rows)]

        return await self._db.read(work)


def _entry(r: tuple[Any, ...]) -> AuditEntry:
    return AuditEntry(
        id=r[0], at=r[1], actor=r[2], claimed_user=r[3], action=r[4], target=r[5], reason=r[6], detail=r[7]
    )


def append(db: sqlite3.Connection, entry: AuditEntry) -> None:
    """Appends `entry` inside the caller's transaction (so the write and its record commit together)."""
    db.execute(
        "INSERT INTO audit_log (at, actor, claimed_user, action, target, reason, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (entry.at, entry.actor, entry.claimed_user, entry.action, entry.target, entry.reason, entry.detail),
    )
