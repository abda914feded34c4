"""The catalog and its leases in SQLite: `instances`, `events`, and the revision in `meta`.

One catalog change is one transaction that takes the next revision from `meta`, writes the
instance row, appends the event at that revision and trims the log to its retention, so the
revision on disk always matches the catalog on disk and revisions have no gaps ("the log
holds every event after N" is then checked from the oldest revision kept).

Reading the whole catalog (ListInstances, watch snapshots) decodes every row; the JSON body
of an instance changes only when it re-registers, while its lease moves every heartbeat. So
the reader keeps the decoded instance of each body it saw in the last snapshot and only puts
the current lease on it: a snapshot of 1,500 instances costs a few ms instead of ~80, and
holds the interpreter (which the event loop needs too) that much less.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace

from meshwarden.registry.model import (
    CatalogEvent,
    Instance,
    RemovalReason,
    Removed,
    Snapshot,
    Upserted,
)
from meshwarden.registry.store.instance_codec import event_from_row, instance_body, instance_from_row
from meshwarden.registry.store.sqlite.database import Database

_INSTANCE_COLUMNS = "body, lease_expires_at, svid_expires_at"


class SqliteCatalog:
    def __init__(self, db: Database, *, event_log_retention: int) -> None:
        self._db, self._retention = db, event_log_retention
        self._decoded: dict[str, Instance] = {}  # body -> instance; used on the reader thread only

    async def revision(self) -> int:
        return await self._db.read(_revision)

    async def instance(self, instance_id: str) -> Instance | None:
        return await self._db.read(lambda db: _instance(db, instance_id))

    async def snapshot(self) -> Snapshot:
        return await self._db.read(self._snapshot)

    async def upsert(self, instance: Instance) -> Upserted:
        def work(db: sqlite3.Connection) -> Upserted:
            return self._write(db, "INSERT OR REPLACE", instance)

        return await self._db.write(work)

    async def add(self, instance: Instance) -> Upserted | None:
        def work(db: sqlite3.Connection) -> Upserted | None:
            sql = "SELECT 1 FROM instances WHERE instance_id = ?"
            if db.execute(sql, (instance.instance_id,)).fetchone() is not None:
                return None
            return self._write(db, "INSERT", instance)

        return await self._db.write(work)

    async def add_all(self, instances: Sequence[Instance]) -> list[Upserted | None]:
        def work(db: sqlite3.Connection) -> list[Upserted | None]:
            added: list[Upserted | None] = []
            for instance in instances:
                sql = "SELECT 1 FROM instances WHERE instance_id = ?"
                taken = db.execute(sql, (instance.instance_id,)).fetchone() is not None
                added.append(None if taken else self._write(db, "INSERT", instance))
            return added

        return await self._db.write(work)

    def _write(self, db: sqlite3.Connection, insert: str, instance: Instance) -> Upserted:
        revision = _next_revision(db)
        db.execute(
            f"{insert} INTO instances (instance_id, agent, lease_expires_at, svid_expires_at, body) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                instance.instance_id,
                instance.agent,
                instance.lease_expires_at,
                instance.svid_expires_at,
                instance_body(instance),
            ),
        )
        db.execute(
            "INSERT INTO events (revision, instance_id, kind, body) VALUES (?, ?, 'upserted', ?)",
            (revision, instance.instance_id, instance_body(instance, with_lease=True)),
        )
        self._trim(db, revision)
        return Upserted(revision=revision, instance=instance)

    async def remove(self, instance_id: str, reason: RemovalReason) -> Removed | None:
        def work(db: sqlite3.Connection) -> Removed | None:
            if db.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,)).rowcount != 1:
                return None
            revision = _next_revision(db)
            db.execute(
                "INSERT INTO events (revision, instance_id, kind, reason) VALUES (?, ?, 'removed', ?)",
                (revision, instance_id, reason),
            )
            self._trim(db, revision)
            return Removed(revision=revision, instance_id=instance_id, reason=reason)

        return await self._db.write(work)

    async def events_after(self, revision: int) -> list[CatalogEvent] | None:
        return await self._db.read(lambda db: _events_after(db, revision))

    def _snapshot(self, db: sqlite3.Connection) -> Snapshot:
        rows = db.execute(f"SELECT {_INSTANCE_COLUMNS} FROM instances ORDER BY agent, instance_id").fetchall()
        known, decoded = self._decoded, {}
        for body, lease, svid in rows:
            instance = known.get(body)
            decoded[body] = instance if instance is not None else instance_from_row(body, lease, svid)
        self._decoded = decoded  # bounded by the catalog: bodies no longer stored are forgotten
        instances = tuple(
            instance
            if (instance := decoded[body]).lease_expires_at == lease and instance.svid_expires_at == svid
            else replace(instance, lease_expires_at=float(lease), svid_expires_at=float(svid))
            for body, lease, svid in rows
        )
        return Snapshot(revision=_revision(db), instances=instances)

    def _trim(self, db: sqlite3.Connection, revision: int) -> None:
        db.execute("DELETE FROM events WHERE revision <= ?", (revision - self._retention,))


class SqliteLeases:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def set_lease(
        self,
        instance_id: str,
        lease_expires_at: float,
        svid_expires_at: float | None = None,
        *,
        agent: str | None = None,
        live_at: float | None = None,
    ) -> bool:
        sets, conditions = ["lease_expires_at = ?"], ["instance_id = ?"]
        values: list[object] = [lease_expires_at]
        if svid_expires_at is not None:
            sets.append("svid_expires_at = ?")
            values.append(svid_expires_at)
        values.append(instance_id)
        if agent is not None:
            conditions.append("agent = ?")
            values.append(agent)
        if live_at is not None:
            conditions.append("lease_expires_at > ?")
            values.append(live_at)
        sql = f"UPDATE instances SET {', '.join(sets)} WHERE {' AND '.join(conditions)}"

        def work(db: sqlite3.Connection) -> bool:
            return bool(db.execute(sql, values).rowcount == 1)

        # Renewals are the registry's most frequent write (every sidecar, every heartbeat) and
        # nothing a crash must keep (a restart forgives every lease): those that arrive while
        # the writer is busy share one transaction and one hop to its thread.
        return await self._db.write_batched(work)

    async def extend_all(self, until: float) -> int:
        def work(db: sqlite3.Connection) -> int:
            sql = "UPDATE instances SET lease_expires_at = ? WHERE lease_expires_at < ?"
            return int(db.execute(sql, (until, until)).rowcount)

        return await self._db.write(work)

    async def expired(self, now: float) -> list[str]:
        def work(db: sqlite3.Connection) -> list[str]:
            sql = "SELECT instance_id FROM instances WHERE lease_expires_at <= ? ORDER BY lease_expires_at"
            return [str(instance_id) for (instance_id,) in db.execute(sql, (now,))]

        return await self._db.read(work)

    async def earliest_expiry(self) -> float | None:
        def work(db: sqlite3.Connection) -> float | None:
            value = db.execute("SELECT MIN(lease_expires_at) FROM instances").fetchone()[0]
            return None if value is None else float(value)

        return await self._db.read(work)


def _revision(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])


def _next_revision(db: sqlite3.Connection) -> int:
    row = db.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision' RETURNING value").fetchone()
    return int(row[0])


def _instance(db: sqlite3.Connection, instance_id: str) -> Instance | None:
    row = db.execute(f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?", (instance_id,)).fetchone()
    return None if row is None else instance_from_row(row[0], row[1], row[2])


def _events_after(db: sqlite3.Connection, revision: int) -> list[CatalogEvent] | None:
    current = _revision(db)
    if revision > current:
        return None
    if revision == current:
        return []
    oldest = db.execute("SELECT MIN(revision) FROM events").fetchone()[0]
    if oldest is None or oldest > revision + 1:
        return None
    rows = db.execute(
        "SELECT revision, instance_id, kind, body, reason FROM events WHERE revision > ? ORDER BY revision",
        (revision,),
    ).fetchall()
    return [event_from_row(*row) for row in rows]
