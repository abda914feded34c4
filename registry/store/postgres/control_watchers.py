"""The sidecars watching each replica, in PostgreSQL: `registry_replicas` (each replica and when
it last published) and `control_watchers` (its watchers and what each acknowledged). A replica
replaces its own rows in one transaction; rows of a replica that stopped publishing (killed)
go with it, by the foreign key, once it is forgotten."""

from __future__ import annotations

from collections.abc import Sequence

from meshwarden.registry.store.postgres.database import Connection, Database
from meshwarden.registry.store.records import ControlWatcher


class PostgresControlWatchers:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def publish(
        self, replica_id: str, watchers: Sequence[ControlWatcher], now: float, *, forget_before: float
    ) -> None:
        async def work(connection: Connection) -> None:
            await connection.execute("DELETE FROM registry_replicas WHERE seen_at < $1", forget_before)
            await connection.execute(
                "INSERT INTO registry_replicas (replica_id, seen_at) VALUES ($1, $2) "
                "ON CONFLICT (replica_id) DO UPDATE SET seen_at = excluded.seen_at",
                replica_id,
                now,
            )
            await connection.execute("DELETE FROM control_watchers WHERE replica_id = $1", replica_id)
            if watchers:
                await connection.execute(
                    "INSERT INTO control_watchers (replica_id, instance_id, spiffe_id, acknowledged) "
                    "SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bigint[])",
                    replica_id,
                    [w.instance_id for w in watchers],
                    [w.spiffe_id for w in watchers],
                    [w.acknowledged for w in watchers],
                )

        await self._db.write(work)

    async def live(self, seen_since: float) -> list[ControlWatcher]:
        async def work(connection: Connection) -> list[ControlWatcher]:
            rows = await connection.fetch(
                "SELECT w.instance_id, w.spiffe_id, max(w.acknowledged) FROM control_watchers w "
                "JOIN registry_replicas r ON r.replica_id = w.replica_id WHERE r.seen_at >= $1 "
                "GROUP BY w.instance_id, w.spiffe_id ORDER BY w.instance_id, w.spiffe_id",
                seen_since,
            )
            return [ControlWatcher(str(r[0]), str(r[1]), int(r[2])) for r in rows]

        return await self._db.read(work)
