"""Policy bundle revisions (`policy_bundles`) and each sidecar's report (`bundle_status`) in SQLite."""

from __future__ import annotations

import sqlite3

from meshwarden.registry.store.records import AuditEntry, SidecarBundleStatus, StoredBundle
from meshwarden.registry.store.sqlite import audit
from meshwarden.registry.store.sqlite.database import Database


class SqliteBundles:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, bundle: StoredBundle, entry: AuditEntry) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO policy_bundles (revision, name, digest, artifact, pushed_at) VALUES (?, ?, ?, ?, ?)",
                (bundle.revision, bundle.name, bundle.digest, bundle.artifact, bundle.pushed_at),
            )
            audit.append(db, entry)

        await self._db.write(work)

    async def latest(self) -> StoredBundle | None:
        def work(db: sqlite3.Connection) -> StoredBundle | None:
            row = db.execute(
                "SELECT name, revision, digest, artifact, pushed_at FROM policy_bundles ORDER BY revision DESC LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            name, revision, digest, artifact, pushed_at = row
            return StoredBundle(
                name=name, revision=revision, digest=digest, artifact=bytes(artifact), pushed_at=pushed_at
            )

        return await self._db.read(work)

    async def history(self, limit: int, before: int = 0) -> list[StoredBundle]:
        def work(db: sqlite3.Connection) -> list[StoredBundle]:
            rows = db.execute(
                "SELECT name, revision, digest, pushed_at FROM policy_bundles WHERE (? = 0 OR revision < ?)"
                " ORDER BY revision DESC LIMIT ?",
                (before, before, limit),
            ).fetchall()
            return [StoredBundle(name=n, revision=r, digest=d, artifact=b"", pushed_at=at) for n, r, d, at in rows]

        return await self._db.read(work)

    async def revision(self, revision: int) -> StoredBundle | None:
        def work(db: sqlite3.Connection) -> StoredBundle | None:
            row = db.execute(
                "SELECT name, revision, digest, artifact, pushed_at FROM policy_bundles WHERE revision = ?", (revision,)
            ).fetchone()
            if row is None:
                return None
            name, number, digest, artifact, pushed_at = row
            return StoredBundle(
                name=name, revision=number, digest=digest, artifact=bytes(artifact), pushed_at=pushed_at
            )

        return await self._db.read(work)

    async def put_status(self, status: SidecarBundleStatus) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO bundle_status (instance_id, agent, active_revision, active_digest, "
                "refused_revision, refusal, reported_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    status.instance_id,
                    status.agent,
                    status.active_revision,
                    status.active_digest,
                    status.refused_revision,
                    status.refusal,
                    status.reported_at,
                ),
            )

        await self._db.write(work)

    async def statuses(self) -> list[SidecarBundleStatus]:
        def work(db: sqlite3.Connection) -> list[SidecarBundleStatus]:
            rows = db.execute(
                "SELECT instance_id, agent, active_revision, active_digest, refused_revision, refusal, reported_at "
                "FROM bundle_status ORDER BY agent, instance_id"
            ).fetchall()
            return [
                SidecarBundleStatus(
                    instance_id=r[0],
                    agent=r[1],
                    active_revision=r[2],
                    active_digest=r[3],
                    refused_revision=r[4],
                    refusal=r[5],
                    reported_at=r[6],
                )
                for r in rows
            ]

        return await self._db.read(work)
