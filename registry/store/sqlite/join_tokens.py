"""Join tokens in SQLite (`join_tokens`: the SHA-256 of each secret, never the secret)."""

from __future__ import annotations

import sqlite3

from meshwarden.registry.store.records import JoinTokenRecord
from meshwarden.registry.store.sqlite.database import Database

_COLUMNS = "token_id, secret_sha256, agent, created_at, expires_at, used_at, created_by, created_by_claim"


class SqliteJoinTokens:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, token: JoinTokenRecord, *, forget_expired_before: float) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM join_tokens WHERE expires_at < ?", (forget_expired_before,))
            db.execute(
                f"INSERT INTO join_tokens ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    token.token_id,
                    token.secret_sha256,
                    token.agent,
                    token.created_at,
                    token.expires_at,
                    token.used_at,
                    token.created_by,
                    token.created_by_claim,
                ),
            )

        await self._db.write(work)

    async def get(self, token_id: str) -> JoinTokenRecord | None:
        def work(db: sqlite3.Connection) -> JoinTokenRecord | None:
            row = db.execute(f"SELECT {_COLUMNS} FROM join_tokens WHERE token_id = ?", (token_id,)).fetchone()
            if row is None:
                return None
            return JoinTokenRecord(
                token_id=row[0],
                secret_sha256=str(row[1]),
                agent=row[2],
                created_at=row[3],
                expires_at=row[4],
                used_at=row[5],
                created_by=row[6],
                created_by_claim=row[7],
            )

        return await self._db.read(work)

    async def mark_used(self, token_id: str, at: float) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            sql = "UPDATE join_tokens SET used_at = ? WHERE token_id = ? AND used_at IS NULL"
            return bool(db.execute(sql, (at, token_id)).rowcount == 1)

        return await self._db.write(work)
