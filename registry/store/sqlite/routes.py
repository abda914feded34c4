"""Weighted version routes in SQLite (`routes`: capability -> weights as JSON)."""

from __future__ import annotations

import json
import sqlite3

from meshwarden.registry.store.records import AuditEntry, StoredRoute
from meshwarden.registry.store.sqlite import audit
from meshwarden.registry.store.sqlite.database import Database


class SqliteRoutes:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, route: StoredRoute, entry: AuditEntry) -> None:
        def work(db: sqlite3.Connection) -> None:
            if route.weights:
                db.execute(
                    "INSERT OR REPLACE INTO routes (capability, weights, updated_at) VALUES (?, ?, ?)",
                    (route.capability, json.dumps(dict(route.weights), sort_keys=True), route.updated_at),
                )
            else:
                db.execute("DELETE FROM routes WHERE capability = ?", (route.capability,))
            audit.append(db, entry)

        await self._db.write(work)

    async def list(self) -> list[StoredRoute]:
        def work(db: sqlite3.Connection) -> list[StoredRoute]:
            rows = db.execute("SELECT capability, weights, updated_at FROM routes ORDER BY capability").fetchall()
            return [StoredRoute(capability=r[0], weights=json.loads(r[1]), updated_at=r[2]) for r in rows]

        return await self._db.read(work)
