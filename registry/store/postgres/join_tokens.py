"""Join tokens in PostgreSQL (`join_tokens`: the SHA-256 of each secret, never the secret).
`mark_used` is one conditional UPDATE, so two replicas enrolling with one token cannot both win."""

from __future__ import annotations

from meshwarden.registry.store.postgres.database import Connection, Database
from meshwarden.registry.store.records import JoinTokenRecord

_COLUMNS = "token_id, secret_sha256, agent, created_at, expires_at, used_at, created_by, created_by_claim"


class PostgresJoinTokens:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, token: JoinTokenRecord, *, forget_expired_before: float) -> None:
        async def work(connection: Connection) -> None:
            await connection.execute("DELETE FROM join_tokens WHERE expires_at < $1", forget_expired_before)
            await connection.execute(
                f"INSERT INTO join_tokens ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                token.token_id,
                token.secret_sha256,
                token.agent,
                token.created_at,
                token.expires_at,
                token.used_at,
                token.created_by,
                token.created_by_claim,
            )

        await self._db.write(work)

    async def get(self, token_id: str) -> JoinTokenRecord | None:
        async def work(connection: Connection) -> JoinTokenRecord | None:
            row = await connection.fetchrow(f"SELECT {_COLUMNS} FROM join_tokens WHERE token_id = $1", token_id)
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
        async def work(connection: Connection) -> bool:
            status = await connection.execute(
                "UPDATE join_tokens SET used_at = $1 WHERE token_id = $2 AND used_at IS NULL", at, token_id
            )
            return bool(status == "UPDATE 1")

        return await self._db.write(work)
