"""Approvals in SQLite (table `approvals`, schema in registry.store.sqlite.migrations). Each
state change is one conditional UPDATE (`WHERE state = ...`) in the same transaction as its
audit entry, so two operators deciding at once, or two calls using one approval at once,
cannot both win: the loser sees that no row changed."""

from __future__ import annotations

import sqlite3
from typing import Final

from meshwarden.registry.store.approval_codec import approval_body, approval_from_row
from meshwarden.registry.store.records import AuditEntry, StoredApproval
from meshwarden.registry.store.sqlite import audit
from meshwarden.registry.store.sqlite.database import Database

_COLUMNS: Final = (
    "id, state, agent, spiffe_id, call_kind, capability, arguments_sha256, body, requested_at, expires_at, "
    "decided_at, decided_by, reason, used_at, used_by_call_id"
)


class SqliteApprovals:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, approval: StoredApproval, entry: AuditEntry) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                f"INSERT INTO approvals ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
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
                    None,
                    "",
                    "",
                    None,
                    "",
                ),
            )
            audit.append(db, entry)

        await self._db.write(work)

    async def get(self, approval_id: str) -> StoredApproval | None:
        def work(db: sqlite3.Connection) -> StoredApproval | None:
            row = db.execute(f"SELECT {_COLUMNS} FROM approvals WHERE id = ?", (approval_id,)).fetchone()
            return None if row is None else approval_from_row(row)

        return await self._db.read(work)

    async def find(self, agent: str, capability: str, arguments_sha256: str, state: str) -> StoredApproval | None:
        def work(db: sqlite3.Connection) -> StoredApproval | None:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM approvals WHERE agent = ? AND capability = ? AND arguments_sha256 = ? "
                "AND state = ? ORDER BY requested_at, id LIMIT 1",
                (agent, capability, arguments_sha256, state),
            ).fetchone()
            return None if row is None else approval_from_row(row)

        return await self._db.read(work)

    async def recent(
        self, *, pending_only: bool, limit: int, after: tuple[float, str] | None = None, oldest_first: bool = False
    ) -> list[StoredApproval]:
        where = ["state = 'pending'"] if pending_only else []
        params: list[object] = []
        order = "ASC" if oldest_first else "DESC"
        if after is not None:
            where.append(f"(requested_at, id) {'>' if oldest_first else '<'} (?, ?)")
            params += after
        sql = f"SELECT {_COLUMNS} FROM approvals WHERE {' AND '.join(where) or '1'} "

        def work(db: sqlite3.Connection) -> list[StoredApproval]:
            rows = db.execute(f"{sql}ORDER BY requested_at {order}, id {order} LIMIT ?", (*params, limit)).fetchall()
            return [approval_from_row(r) for r in rows]

        return await self._db.read(work)

    async def due(self, now: float) -> list[StoredApproval]:
        def work(db: sqlite3.Connection) -> list[StoredApproval]:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM approvals WHERE state IN ('pending', 'approved') AND expires_at <= ?", (now,)
            ).fetchall()
            return [approval_from_row(r) for r in rows]

        return await self._db.read(work)

    async def decide(
        self, approval_id: str, from_state: str, to_state: str, at: float, by: str, reason: str, entry: AuditEntry
    ) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            changed = db.execute(
                "UPDATE approvals SET state = ?, decided_at = ?, decided_by = ?, reason = ? WHERE id = ? AND state = ?",
                (to_state, at, by, reason, approval_id, from_state),
            ).rowcount
            if changed:
                audit.append(db, entry)
            return bool(changed)

        return await self._db.write(work)

    async def use(self, approval_id: str, at: float, call_id: str, entry: AuditEntry) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            changed = db.execute(
                "UPDATE approvals SET state = 'used', used_at = ?, used_by_call_id = ? WHERE id = ? AND state = 'approved'",
                (at, call_id, approval_id),
            ).rowcount
            if changed:
                audit.append(db, entry)
            return bool(changed)

        return await self._db.write(work)
