"""Policy bundle revisions (`policy_bundles`) and each sidecar's report (`bundle_status`) in
PostgreSQL. A push locks the table against other pushes (from any replica) until it commits,
so "newer than every revision pushed" holds across replicas, not only within one."""

from __future__ import annotations

from meshwarden.registry.errors import Conflict
from meshwarden.registry.store.postgres import audit
from meshwarden.registry.store.postgres.changes import notify
from meshwarden.registry.store.postgres.database import Connection, Database
from meshwarden.registry.store.records import AuditEntry, SidecarBundleStatus, StoredBundle

_STATUS_COLUMNS = "instance_id, agent, active_revision, active_digest, refused_revision, refusal, reported_at"


class PostgresBundles:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, bundle: StoredBundle, entry: AuditEntry) -> None:
        async def work(connection: Connection) -> None:
            await connection.execute("LOCK TABLE policy_bundles IN SHARE ROW EXCLUSIVE MODE")
            latest = await connection.fetchval("SELECT MAX(revision) FROM policy_bundles")
            if latest is not None and bundle.revision <= latest:
                raise Conflict(
                    f"bundle {bundle.name} revision {bundle.revision} is not newer than revision {latest} "
                    "already pushed (through another registry replica); raise `revision` and build again"
                )
            await connection.execute(
                "INSERT INTO policy_bundles (revision, name, digest, artifact, pushed_at) VALUES ($1, $2, $3, $4, $5)",
                bundle.revision,
                bundle.name,
                bundle.digest,
                bundle.artifact,
                bundle.pushed_at,
            )
            await audit.append(connection, entry)
            await notify(connection)

        await self._db.write(work)

    async def latest(self) -> StoredBundle | None:
        async def work(connection: Connection) -> StoredBundle | None:
            row = await connection.fetchrow(
                "SELECT name, revision, digest, artifact, pushed_at FROM policy_bundles ORDER BY revision DESC LIMIT 1"
            )
            if row is None:
                return None
            return StoredBundle(name=row[0], revision=row[1], digest=row[2], artifact=bytes(row[3]), pushed_at=row[4])

        return await self._db.read(work)

    async def history(self, limit: int, before: int = 0) -> list[StoredBundle]:
        async def work(connection: Connection) -> list[StoredBundle]:
            rows = await connection.fetch(
                "SELECT name, revision, digest, pushed_at FROM policy_bundles WHERE ($2::bigint = 0 OR revision < $2)"
                " ORDER BY revision DESC LIMIT $1",
                limit,
                before,
            )
            return [StoredBundle(name=r[0], revision=r[1], digest=r[2], artifact=b"", pushed_at=r[3]) for r in rows]

        return await self._db.read(work)

    async def revision(self, revision: int) -> StoredBundle | None:
        async def work(connection: Connection) -> StoredBundle | None:
            row = await connection.fetchrow(
                "SELECT name, revision, digest, artifact, pushed_at FROM policy_bundles WHERE revision = $1", revision
            )
            if row is None:
                return None
            return StoredBundle(name=row[0], revision=row[1], digest=row[2], artifact=bytes(row[3]), pushed_at=row[4])

        return await self._db.read(work)

    async def put_status(self, status: SidecarBundleStatus) -> None:
        async def work(connection: Connection) -> None:
            await connection.execute(
                f"INSERT INTO bundle_status ({_STATUS_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                "ON CONFLICT (instance_id) DO UPDATE SET agent = excluded.agent, "
                "active_revision = excluded.active_revision, active_digest = excluded.active_digest, "
                "refused_revision = excluded.refused_revision, refusal = excluded.refusal, "
                "reported_at = excluded.reported_at",
                status.instance_id,
                status.agent,
                status.active_revision,
                status.active_digest,
                status.refused_revision,
                status.refusal,
                status.reported_at,
            )

        await self._db.write(work)

    async def statuses(self) -> list[SidecarBundleStatus]:
        async def work(connection: Connection) -> list[SidecarBundleStatus]:
            rows = await connection.fetch(f"SELECT {_STATUS_COLUMNS} FROM bundle_status ORDER BY agent, instance_id")
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
