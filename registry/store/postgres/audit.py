"""The audit log in PostgreSQL (`audit_log`), and the insert other stores use to commit an entry
inside their own transaction."""

from __future__ import annotations

from typing import Any, Final

from meshwarden.registry.store.postgres.database import Connection, Database
from meshwarden.registry.store.records import AuditEntry

_COLUMNS: Final = "id, at, actor, claimed_user, action, target, reason, detail"


class PostgresAudit:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, entry: AuditEntry) -> None:
        await self._db.statement(lambda connection: append(connection, entry))

    async def before(self, before_id: int, limit: int) -> list[AuditEntry]:
        async def work(connection: Connection) -> list[AuditEntry]:
            rows = await connection.fetch(
                f"SELECT {_COLUMNS} FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT $2",
                before_id if before_id > 0 else 2**63 - 1,
                limit,
            )
            return [_entry(r) for r in rows]

        return await self._db.read(work)

    async def list(self, since: float, limit: int, before_id: int = 0) -> list[AuditEntry]:
        async def work(connection: Connection) -> list[AuditEntry]:
            rows = await connection.fetch(
                f"SELECT {_COLUMNS} FROM audit_log WHERE at >= $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                since,
                before_id if before_id > 0 else 2**63 - 1,
                limit,
            )
            return [_entry(r) for r in reversed(rows)]

        return await self._db.read(work)


async def append(connection: Connection, entry: AuditEntry) -> None:
    """Appends `entry` inside the caller's transaction (so the write and its record commit together)."""
    await connection.execute(
        "INSERT INTO audit_log (at, actor, claimed_user, action, target, reason, detail) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        entry.at,
        entry.actor,
        entry.claimed_user,
        entry.action,
        entry.target,
        entry.reason,
        entry.detail,
    )


def _entry(r: Any) -> AuditEntry:
    return AuditEntry(
        id=r[0], at=r[1], actor=r[2], claimed_user=r[3], action=r[4], target=r[5], reason=r[6], detail=r[7]
    )
