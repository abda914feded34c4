"""Kill switches and isolations in SQLite; the controls revision is `meta.controls_revision`.

Each change writes its row, takes the next controls revision and appends its audit entry in
one transaction, then reads the whole set in force in the same transaction: what the domain
publishes is exactly what that revision holds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from meshwarden.registry.store.records import AuditEntry, ControlsSet, Isolation, KillEffect, KillSwitch
from meshwarden.registry.store.sqlite import audit
from meshwarden.registry.store.sqlite.database import Database


class SqliteControls:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def current(self) -> ControlsSet:
        return await self._db.read(lambda db: _current(db, _revision(db)))

    async def add_kill(self, switch: KillSwitch, entry: AuditEntry) -> ControlsSet:
        def change(db: sqlite3.Connection) -> bool:
            db.execute(
                "INSERT INTO kill_switches (id, scope_kind, scope_value, reason, created_by, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    switch.id,
                    switch.scope_kind,
                    switch.scope_value,
                    switch.reason,
                    switch.created_by,
                    switch.created_at,
                    switch.expires_at,
                ),
            )
            return True

        return _required(await self._change(change, entry))

    async def remove_kill(self, switch_id: str, entry: AuditEntry) -> ControlsSet | None:
        def change(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM kill_effects WHERE switch_id = ?", (switch_id,))
            return bool(db.execute("DELETE FROM kill_switches WHERE id = ?", (switch_id,)).rowcount)

        return await self._change(change, entry)

    async def record_effect(self, effect: KillEffect) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO kill_effects (switch_id, enforced, expected, took_s) "
                "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM kill_switches WHERE id = ?)",
                (effect.switch_id, effect.enforced, effect.expected, effect.took_s, effect.switch_id),
            )

        await self._db.write(work)

    async def effects(self) -> dict[str, KillEffect]:
        def work(db: sqlite3.Connection) -> dict[str, KillEffect]:
            rows = db.execute(
                "SELECT e.switch_id, e.enforced, e.expected, e.took_s FROM kill_effects e "
                "JOIN kill_switches k ON k.id = e.switch_id"
            ).fetchall()
            return {r[0]: KillEffect(switch_id=r[0], enforced=r[1], expected=r[2], took_s=r[3]) for r in rows}

        return await self._db.read(work)

    async def put_isolation(self, isolation: Isolation, entry: AuditEntry) -> ControlsSet:
        def change(db: sqlite3.Connection) -> bool:
            db.execute(
                "INSERT OR REPLACE INTO isolations (agent, version, reason, created_by, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (isolation.agent, isolation.version, isolation.reason, isolation.created_by, isolation.created_at),
            )
            return True

        return _required(await self._change(change, entry))

    async def remove_isolation(self, agent: str, version: str, entry: AuditEntry) -> ControlsSet | None:
        def change(db: sqlite3.Connection) -> bool:
            sql = "DELETE FROM isolations WHERE agent = ? AND version = ?"
            return bool(db.execute(sql, (agent, version)).rowcount)

        return await self._change(change, entry)

    async def _change(self, change: Callable[[sqlite3.Connection], bool], entry: AuditEntry) -> ControlsSet | None:
        def work(db: sqlite3.Connection) -> ControlsSet | None:
            if not change(db):
                return None
            row = db.execute(
                "UPDATE meta SET value = value + 1 WHERE key = 'controls_revision' RETURNING value"
            ).fetchone()
            audit.append(db, entry)
            return _current(db, int(row[0]))

        return await self._db.write(work)


def _required(changed: ControlsSet | None) -> ControlsSet:
    if changed is None:
        raise RuntimeError("an insert changed nothing")  # a bug: an insert always writes
    return changed


def _revision(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT value FROM meta WHERE key = 'controls_revision'").fetchone()[0])


def _current(db: sqlite3.Connection, revision: int) -> ControlsSet:
    kills = db.execute(
        "SELECT id, scope_kind, scope_value, reason, created_by, created_at, expires_at FROM kill_switches "
        "ORDER BY created_at, id"
    ).fetchall()
    isolations = db.execute(
        "SELECT agent, version, reason, created_by, created_at FROM isolations ORDER BY agent, version"
    ).fetchall()
    return ControlsSet(
        revision=revision,
        kill_switches=tuple(_kill_from_row(r) for r in kills),
        isolations=tuple(
            Isolation(agent=r[0], version=r[1], reason=r[2], created_by=r[3], created_at=r[4]) for r in isolations
        ),
    )


def _kill_from_row(row: tuple[object, ...]) -> KillSwitch:
    expires = row[6]
    return KillSwitch(
        id=str(row[0]),
        scope_kind=int(str(row[1])),
        scope_value=str(row[2]),
        reason=str(row[3]),
        created_by=str(row[4]),
        created_at=float(str(row[5])),
        expires_at=None if expires is None else float(str(expires)),
    )
