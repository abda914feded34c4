"""Kill switches and isolations in PostgreSQL; the controls revision is `meta.controls_revision`.

Each change locks the revision row first (changes from every replica are serialized there),
writes its row, takes the next revision, appends its audit entry and reads the whole set in
force, all in one transaction: what the domain publishes is exactly what that revision holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from meshwarden.registry.store.postgres import audit
from meshwarden.registry.store.postgres.changes import notify
from meshwarden.registry.store.postgres.database import Connection, Database
from meshwarden.registry.store.records import AuditEntry, ControlsSet, Isolation, KillEffect, KillSwitch

Change = Callable[[Connection], Awaitable[bool]]


class PostgresControls:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def current(self) -> ControlsSet:
        async def work(connection: Connection) -> ControlsSet:
            revision = await connection.fetchval("SELECT value FROM meta WHERE key = 'controls_revision'")
            return await _current(connection, int(revision))

        return await self._db.read(work)

    async def add_kill(self, switch: KillSwitch, entry: AuditEntry) -> ControlsSet:
        async def change(connection: Connection) -> bool:
            await connection.execute(
                "INSERT INTO kill_switches (id, scope_kind, scope_value, reason, created_by, created_at, expires_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                switch.id,
                switch.scope_kind,
                switch.scope_value,
                switch.reason,
                switch.created_by,
                switch.created_at,
                switch.expires_at,
            )
            return True

        return _required(await self._change(change, entry))

    async def remove_kill(self, switch_id: str, entry: AuditEntry) -> ControlsSet | None:
        async def change(connection: Connection) -> bool:
            await connection.execute("DELETE FROM kill_effects WHERE switch_id = $1", switch_id)
            return bool(await connection.execute("DELETE FROM kill_switches WHERE id = $1", switch_id) == "DELETE 1")

        return await self._change(change, entry)

    async def put_isolation(self, isolation: Isolation, entry: AuditEntry) -> ControlsSet:
        async def change(connection: Connection) -> bool:
            await connection.execute(
                "INSERT INTO isolations (agent, version, reason, created_by, created_at) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (agent, version) DO UPDATE SET reason = excluded.reason, "
                "created_by = excluded.created_by, created_at = excluded.created_at",
                isolation.agent,
                isolation.version,
                isolation.reason,
                isolation.created_by,
                isolation.created_at,
            )
            return True

        return _required(await self._change(change, entry))

    async def record_effect(self, effect: KillEffect) -> None:
        async def work(connection: Connection) -> None:
            await connection.execute(
                "INSERT INTO kill_effects (switch_id, enforced, expected, took_s) "
                "SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM kill_switches WHERE id = $1) "
                "ON CONFLICT (switch_id) DO UPDATE SET enforced = excluded.enforced, expected = excluded.expected, "
                "took_s = excluded.took_s",
                effect.switch_id,
                effect.enforced,
                effect.expected,
                effect.took_s,
            )

        await self._db.write(work)

    async def effects(self) -> dict[str, KillEffect]:
        async def work(connection: Connection) -> dict[str, KillEffect]:
            rows = await connection.fetch(
                "SELECT e.switch_id, e.enforced, e.expected, e.took_s FROM kill_effects e "
                "JOIN kill_switches k ON k.id = e.switch_id"
            )
            return {
                r[0]: KillEffect(switch_id=r[0], enforced=int(r[1]), expected=int(r[2]), took_s=float(r[3]))
                for r in rows
            }

        return await self._db.read(work)

    async def remove_isolation(self, agent: str, version: str, entry: AuditEntry) -> ControlsSet | None:
        async def change(connection: Connection) -> bool:
            status = await connection.execute(
                "DELETE FROM isolations WHERE agent = $1 AND version = $2", agent, version
            )
            return bool(status == "DELETE 1")

        return await self._change(change, entry)

    async def _change(self, change: Change, entry: AuditEntry) -> ControlsSet | None:
        async def work(connection: Connection) -> ControlsSet | None:
            await connection.execute("SELECT value FROM meta WHERE key = 'controls_revision' FOR UPDATE")
            if not await change(connection):
                return None
            revision = await connection.fetchval(
                "UPDATE meta SET value = value + 1 WHERE key = 'controls_revision' RETURNING value"
            )
            await audit.append(connection, entry)
            await notify(connection)
            return await _current(connection, int(revision))

        return await self._db.write(work)


def _required(changed: ControlsSet | None) -> ControlsSet:
    if changed is None:
        raise RuntimeError("an insert changed nothing")  # a bug: an insert always writes
    return changed


async def _current(connection: Connection, revision: int) -> ControlsSet:
    kills = await connection.fetch(
        "SELECT id, scope_kind, scope_value, reason, created_by, created_at, expires_at FROM kill_switches "
        "ORDER BY created_at, id"
    )
    isolations = await connection.fetch(
        "SELECT agent, version, reason, created_by, created_at FROM isolations ORDER BY agent, version"
    )
    return ControlsSet(
        revision=revision,
        kill_switches=tuple(_kill(r) for r in kills),
        isolations=tuple(
            Isolation(agent=r[0], version=r[1], reason=r[2], created_by=r[3], created_at=r[4]) for r in isolations
        ),
    )


def _kill(row: Any) -> KillSwitch:
    return KillSwitch(
        id=row[0],
        scope_kind=int(row[1]),
        scope_value=row[2],
        reason=row[3],
        created_by=row[4],
        created_at=float(row[5]),
        expires_at=None if row[6] is None else float(row[6]),
    )
