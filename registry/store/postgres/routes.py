"""Weighted version routes in PostgreSQL (`routes`: capability -> weights as JSON); every change
bumps `meta.routes_revision`, which replicas follow (registry.store.postgres.changes)."""

from __future__ import annotations

import json

from meshwarden.registry.store.postgres import audit
from meshwarden.registry.store.postgres.changes import notify
from meshwarden.registry.store.postgres.database import Connection, Database
from meshwarden.registry.store.records import AuditEntry, StoredRoute


class PostgresRoutes:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, route: StoredRoute, entry: AuditEntry) -> None:
        async def work(connection: Connection) -> None:
            await connection.execute("UPDATE meta SET value = value + 1 WHERE key = 'routes_revision'")
            if route.weights:
                await connection.execute(
                    "INSERT INTO routes (capability, weights, updated_at) VALUES ($1, $2, $3) "
                    "ON CONFLICT (capability) DO UPDATE SET weights = excluded.weights, updated_at = excluded.updated_at",
                    route.capability,
                    json.dumps(dict(route.weights), sort_keys=True),
                    route.updated_at,
                )
            else:
                await connection.execute("DELETE FROM routes WHERE capability = $1", route.capability)
            await audit.append(connection, entry)
            await notify(connection)

        await self._db.write(work)

    async def list(self) -> list[StoredRoute]:
        async def work(connection: Connection) -> list[StoredRoute]:
            rows = await connection.fetch("SELECT capability, weights, updated_at FROM routes ORDER BY capability")
            return [StoredRoute(capability=r[0], weights=json.loads(r[1]), updated_at=r[2]) for r in rows]

        return await self._db.read(work)
