"""The catalog and its leases in PostgreSQL: `instances`, `events`, the revision in `meta`.

A catalog change locks the revision row of `meta` first, so changes from every replica are
serialized there: each takes the next revision, writes its instance row and its event, and
commits before the next change can take a revision. Revisions therefore commit in order and
without gaps, and "every event after N" read from `events` is complete, which is what
replicas catch up from (registry.store.postgres.changes wakes them). Locking `meta` before
any instance row also gives every writer the same lock order (no deadlocks).

Round trips are what a change costs (a registration waits for them all, and changes are
serialized), so an upsert is one statement (`_WRITE`: the revision, the row, the event, the
trim and the notification; its CTEs take `meta`'s lock before the instance's, since each
reads the revision), and `add` two inside its transaction. A snapshot's rows are decoded in a
worker thread, reusing the instances decoded for the previous one (as the SQLite store does):
decoding thousands of JSON bodies on the event loop would stall it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from meshwarden.registry.model import CatalogEvent, Instance, RemovalReason, Removed, Snapshot, Upserted
from meshwarden.registry.store.instance_codec import event_from_row, instance_body, instance_from_row
from meshwarden.registry.store.postgres.changes import CHANNEL, notify
from meshwarden.registry.store.postgres.database import Connection, Database

_INSTANCE_COLUMNS = "body, lease_expires_at, svid_expires_at"
_LOCK_REVISION = "SELECT value FROM meta WHERE key = 'revision' FOR UPDATE"
# $1 instance id, $2 agent, $3 lease, $4 SVID expiry, $5 body, $6 event body, $7 retention.
_WRITE = f"""
WITH rev AS (UPDATE meta SET value = value + 1 WHERE key = 'revision' RETURNING value),
row AS (
    INSERT INTO instances (instance_id, agent, lease_expires_at, svid_expires_at, body)
    SELECT $1, $2, $3, $4, $5 FROM rev
    ON CONFLICT (instance_id) DO UPDATE SET agent = excluded.agent, lease_expires_at = excluded.lease_expires_at,
        svid_expires_at = excluded.svid_expires_at, body = excluded.body
),
event AS (INSERT INTO events (revision, instance_id, kind, body) SELECT value, $1, 'upserted', $6 FROM rev),
trim AS (DELETE FROM events WHERE revision <= (SELECT value FROM rev) - $7)
SELECT value, pg_notify('{CHANNEL}', '') FROM rev
"""

# $1..$5 the instances' columns, $6 their revisions, $7 their event bodies, $8 the last
# revision, $9 retention (the rows are new: add_all checked their ids under the lock).
_WRITE_ALL = f"""
WITH row AS (
    INSERT INTO instances (instance_id, agent, lease_expires_at, svid_expires_at, body)
    SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[], $5::text[])
),
event AS (
    INSERT INTO events (revision, instance_id, kind, body)
    SELECT r, i, 'upserted', b FROM unnest($6::bigint[], $1::text[], $7::text[]) AS t(r, i, b)
),
rev AS (UPDATE meta SET value = $8 WHERE key = 'revision'),
trim AS (DELETE FROM events WHERE revision <= $8::bigint - $9)
SELECT pg_notify('{CHANNEL}', '')
"""


class PostgresCatalog:
    def __init__(self, db: Database, *, event_log_retention: int) -> None:
        self._db, self._retention = db, event_log_retention
        self._decoded: dict[str, Instance] = {}  # body -> instance, of the last snapshot

    async def revision(self) -> int:
        return await self._db.read(_revision)

    async def instance(self, instance_id: str) -> Instance | None:
        async def work(connection: Connection) -> Instance | None:
            row = await connection.fetchrow(
                f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE instance_id = $1", instance_id
            )
            return None if row is None else instance_from_row(row[0], row[1], row[2])

        return await self._db.read(work)

    async def snapshot(self) -> Snapshot:
        async def work(connection: Connection) -> tuple[int, list[tuple[str, float, float]]]:
            rows = await connection.fetch(f"SELECT {_INSTANCE_COLUMNS} FROM instances ORDER BY agent, instance_id")
            return await _revision(connection), [(r[0], r[1], r[2]) for r in rows]

        revision, rows = await self._db.read(work)
        return Snapshot(revision=revision, instances=await asyncio.to_thread(self._decode, rows))

    def _decode(self, rows: list[tuple[str, float, float]]) -> tuple[Instance, ...]:
        known, decoded = self._decoded, {}
        for body, lease, svid in rows:
            instance = known.get(body)
            decoded[body] = instance if instance is not None else instance_from_row(body, lease, svid)
        self._decoded = decoded  # bounded by the catalog: bodies no longer stored are forgotten
        return tuple(
            instance
            if (instance := decoded[body]).lease_expires_at == lease and instance.svid_expires_at == svid
            else replace(instance, lease_expires_at=float(lease), svid_expires_at=float(svid))
            for body, lease, svid in rows
        )

    async def upsert(self, instance: Instance) -> Upserted:
        return await self._db.statement(lambda connection: self._write(connection, instance))

    async def add(self, instance: Instance) -> Upserted | None:
        async def work(connection: Connection) -> Upserted | None:
            taken = await connection.fetchval(
                "SELECT EXISTS (SELECT 1 FROM instances WHERE instance_id = $1) FROM meta "
                "WHERE key = 'revision' FOR UPDATE OF meta",
                instance.instance_id,
            )
            return None if taken else await self._write(connection, instance)

        return await self._db.write(work)

    async def add_all(self, instances: Sequence[Instance]) -> list[Upserted | None]:
        """Four round trips for the whole list: lock the revision and find the ids taken, then
        one statement writes every row, every event, the revision, the trim and the wake-up."""
        ids = [i.instance_id for i in instances]

        async def work(connection: Connection) -> list[Upserted | None]:
            row = await connection.fetchrow(
                "SELECT value, ARRAY(SELECT instance_id FROM instances WHERE instance_id = ANY($1::text[])) "
                "FROM meta WHERE key = 'revision' FOR UPDATE OF meta",
                ids,
            )
            revision, taken = int(row[0]), set(row[1])
            added: list[Upserted | None] = []
            for instance in instances:
                if instance.instance_id in taken:
                    added.append(None)
                    continue
                taken.add(instance.instance_id)
                revision += 1
                added.append(Upserted(revision=revision, instance=instance))
            new = [a.instance for a in added if a is not None]
            if new:
                await connection.execute(
                    _WRITE_ALL,
                    [i.instance_id for i in new],
                    [i.agent for i in new],
                    [i.lease_expires_at for i in new],
                    [i.svid_expires_at for i in new],
                    [instance_body(i) for i in new],
                    [a.revision for a in added if a is not None],
                    [instance_body(i, with_lease=True) for i in new],
                    revision,
                    self._retention,
                )
            return added

        return await self._db.write(work)

    async def _write(self, connection: Connection, instance: Instance) -> Upserted:
        revision = await connection.fetchval(
            _WRITE,
            instance.instance_id,
            instance.agent,
            instance.lease_expires_at,
            instance.svid_expires_at,
            instance_body(instance),
            instance_body(instance, with_lease=True),
            self._retention,
        )
        return Upserted(revision=int(revision), instance=instance)

    async def remove(self, instance_id: str, reason: RemovalReason) -> Removed | None:
        async def work(connection: Connection) -> Removed | None:
            await connection.fetchval(_LOCK_REVISION)
            deleted = await connection.execute("DELETE FROM instances WHERE instance_id = $1", instance_id)
            if deleted != "DELETE 1":
                return None
            revision = await _next_revision(connection)
            await connection.execute(
                "INSERT INTO events (revision, instance_id, kind, reason) VALUES ($1, $2, 'removed', $3)",
                revision,
                instance_id,
                reason,
            )
            await self._trim(connection, revision)
            return Removed(revision=revision, instance_id=instance_id, reason=reason)

        return await self._db.write(work)

    async def events_after(self, revision: int) -> list[CatalogEvent] | None:
        async def work(connection: Connection) -> list[CatalogEvent] | None:
            current = await _revision(connection)
            if revision > current:
                return None
            if revision == current:
                return []
            oldest = await connection.fetchval("SELECT MIN(revision) FROM events")
            if oldest is None or oldest > revision + 1:
                return None
            rows = await connection.fetch(
                "SELECT revision, instance_id, kind, body, reason FROM events WHERE revision > $1 ORDER BY revision",
                revision,
            )
            return [event_from_row(r[0], r[1], r[2], r[3], r[4]) for r in rows]

        return await self._db.read(work)

    async def _trim(self, connection: Connection, revision: int) -> None:
        await connection.execute("DELETE FROM events WHERE revision <= $1", revision - self._retention)


class PostgresLeases:
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
        values: list[object] = [lease_expires_at, instance_id]
        sets, conditions = ["lease_expires_at = $1"], ["instance_id = $2"]
        if svid_expires_at is not None:
            values.append(svid_expires_at)
            sets.append(f"svid_expires_at = ${len(values)}")
        if agent is not None:
            values.append(agent)
            conditions.append(f"agent = ${len(values)}")
        if live_at is not None:
            # A lease that lapsed while this replica could not reach the database (no renewal
            # could be written) counts as live if it was live when the database went away.
            lost_at = self._db.lost_since(live_at)
            values.append(live_at if lost_at is None else min(live_at, lost_at))
            conditions.append(f"lease_expires_at > ${len(values)}")
        sql = f"UPDATE instances SET {', '.join(sets)} WHERE {' AND '.join(conditions)}"

        async def work(connection: Connection) -> bool:
            return bool(await connection.execute(sql, *values) == "UPDATE 1")

        return await self._db.statement(work)

    async def extend_all(self, until: float) -> int:
        async def work(connection: Connection) -> int:
            status = await connection.execute(
                "UPDATE instances SET lease_expires_at = $1 WHERE lease_expires_at < $1", until
            )
            return int(status.split()[-1])

        return await self._db.write(work)

    async def expired(self, now: float) -> list[str]:
        async def work(connection: Connection) -> list[str]:
            rows = await connection.fetch(
                "SELECT instance_id FROM instances WHERE lease_expires_at <= $1 ORDER BY lease_expires_at", now
            )
            return [str(r[0]) for r in rows]

        return await self._db.read(work)

    async def earliest_expiry(self) -> float | None:
        async def work(connection: Connection) -> float | None:
            value = await connection.fetchval("SELECT MIN(lease_expires_at) FROM instances")
            return None if value is None else float(value)

        return await self._db.read(work)


async def _revision(connection: Connection) -> int:
    return int(await connection.fetchval("SELECT value FROM meta WHERE key = 'revision'"))


async def _next_revision(connection: Connection) -> int:
    revision = int(
        await connection.fetchval("UPDATE meta SET value = value + 1 WHERE key = 'revision' RETURNING value")
    )
    await notify(connection)
    return revision
