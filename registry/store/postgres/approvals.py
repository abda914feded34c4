"""Approvals in PostgreSQL (table `approvals`). Each state change is one conditional UPDATE
(`WHERE state = ...`) in the same transaction as its audit entry, so two operators deciding
at once through two replicas, or two calls using one approval at once, cannot both win: the
loser sees that no row changed. Each change bumps `meta.approvals_revision` and notifies, so
a sidecar waiting for a decision on one replica hears of a decision made on another."""

from __future__ import annotations

from typing import Final

from meshwarden.registry.store.approval_codec import approval_body, approval_from_row
from meshwarden.registry.store.postgres import audit
from meshwarden.registry.store.postgres.changes import notify
from meshwarden.registry.store.postgres.database import Connection, Database
from meshwarden.registry.store.records import AuditEntry, StoredApproval

_COLUMNS: Final = (
    "id, state, agent, spiffe_id, call_kind, capability, arguments_sha256, body, requested_at, expires_at, "
    "decided_at, decided_by, reason, used_at, used_by_call_id"
)


class PostgresApprovals:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, approval: StoredApproval, entry: AuditEntry) -> None:
        async def work(connection: Connection) -> None:
            await connection.execute(
                f"INSERT INTO approvals ({_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, '', '', NULL, '')",
                approval.id,
                approval.state,
                approval.agent,
                approval.spiffe_id,
                approval.call_kind,
                approval.capability,
                approval.arguments_sha256,
                approval_body(approval),
                approval.requested_at,
                approval.expires_at,
            )
            await audit.append(connection, entry)

        await self._db.write(work)

    async def get(self, approval_id: str) -> StoredApproval | None:
        async def work(connection: Connection) -> StoredApproval | None:
            row = await connection.fetchrow(f"SELECT {_COLUMNS} FROM approvals WHERE id = $1", approval_id)
            return None if row is None else approval_from_row(row)

        return await self._db.read(work)

    async def find(self, agent: str, capability: str, arguments_sha256: str, state: str) -> StoredApproval | None:
        async def work(connection: Connection) -> StoredApproval | None:
            row = await connection.fetchrow(
                f"SELECT {_COLUMNS} FROM approvals WHERE agent = $1 AND capability = $2 AND arguments_sha256 = $3 "
                "AND state = $4 ORDER BY requested_at, id LIMIT 1",
                agent,
                capability,
                arguments_sha256,
                state,
            )
            return None if row is None else approval_from_row(row)

        return await self._db.read(work)

    async def recent(
        self, *, pending_only: bool, limit: int, after: tuple[float, str] | None = None, oldest_first: bool = False
    ) -> list[StoredApproval]:
        where = ["state = 'pending'"] if pending_only else []
        params: list[object] = []
        order = "ASC" if oldest_first else "DESC"
        if after is not None:
            where.append(f"(requested_at, id) {'>' if oldest_first else '<'} ($2, $3)")
            params += after
        sql = f"SELECT {_COLUMNS} FROM approvals WHERE {' AND '.join(where) or 'TRUE'} "

        async def work(connection: Connection) -> list[StoredApproval]:
            rows = await connection.fetch(f"{sql}ORDER BY requested_at {order}, id {order} LIMIT $1", limit, *params)
            return [approval_from_row(r) for r in rows]

        return await self._db.read(work)

    async def due(self, now: float) -> list[StoredApproval]:
        async def work(connection: Connection) -> list[StoredApproval]:
            rows = await connection.fetch(
                f"SELECT {_COLUMNS} FROM approvals WHERE state IN ('pending', 'approved') AND expires_at <= $1", now
            )
            return [approval_from_row(r) for r in rows]

        return await self._db.read(work)

    async def decide(
        self, approval_id: str, from_state: str, to_state: str, at: float, by: str, reason: str, entry: AuditEntry
    ) -> bool:
        async def work(connection: Connection) -> bool:
            status = await connection.execute(
                "UPDATE approvals SET state = $1, decided_at = $2, decided_by = $3, reason = $4 "
                "WHERE id = $5 AND state = $6",
                to_state,
                at,
                by,
                reason,
                approval_id,
                from_state,
            )
            if status != "UPDATE 1":
                return False
            await audit.append(connection, entry)
            await _changed(connection)
            return True

        return await self._db.write(work)

    async def use(self, approval_id: str, at: float, call_id: str, entry: AuditEntry) -> bool:
        async def work(connection: Connection) -> bool:
            status = await connection.execute(
                "UPDATE approvals SET state = 'used', used_at = $1, used_by_call_id = $2 "
                "WHERE id = $3 AND state = 'approved'",
                at,
                call_id,
                approval_id,
            )
            if status != "UPDATE 1":
                return False
            await audit.append(connection, entry)
            await _changed(connection)
            return True

        return await self._db.write(work)


async def _changed(connection: Connection) -> None:
    """Wakes the approval waiters of every replica (registry.replicas) once this commits."""
    await connection.execute("UPDATE meta SET value = value + 1 WHERE key = 'approvals_revision'")
    await notify(connection)
