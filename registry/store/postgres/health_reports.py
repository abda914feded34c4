"""Sidecars' health reports in PostgreSQL (`health_reports`), so that every replica answers with
what sidecars reported to any of them. Each upsert takes the next value of a sequence as its
position; replicas read the reports after the last position they saw. Sequence values can
commit out of order, so a replica may miss a report now and then: its sidecar sends the next
one within a reporting period, which is all a health report is worth."""

from __future__ import annotations

import json

from meshwarden.registry.store.postgres.database import Connection, Database
from meshwarden.registry.store.records import StoredHealthReport

_COLUMNS = "reporter_agent, reporter_instance_id, reporter_registered, findings, reported_at"


class PostgresHealthReports:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, report: StoredHealthReport, *, forget_before: float) -> None:
        async def work(connection: Connection) -> None:
            await connection.execute("DELETE FROM health_reports WHERE reported_at < $1", forget_before)
            await connection.execute(
                f"INSERT INTO health_reports ({_COLUMNS}, position) "
                "VALUES ($1, $2, $3, $4, $5, nextval('health_report_positions')) "
                "ON CONFLICT (reporter_agent, reporter_instance_id) DO UPDATE SET "
                "reporter_registered = excluded.reporter_registered, findings = excluded.findings, "
                "reported_at = excluded.reported_at, position = excluded.position",
                report.reporter_agent,
                report.reporter_instance_id,
                report.reporter_registered,
                json.dumps([list(f) for f in report.findings], separators=(",", ":")),
                report.reported_at,
            )

        await self._db.write(work)

    async def after(self, position: int) -> tuple[list[StoredHealthReport], int]:
        async def work(connection: Connection) -> tuple[list[StoredHealthReport], int]:
            rows = await connection.fetch(
                f"SELECT {_COLUMNS}, position FROM health_reports WHERE position > $1 ORDER BY position", position
            )
            reports = [
                StoredHealthReport(
                    reporter_agent=r[0],
                    reporter_instance_id=r[1],
                    reporter_registered=r[2],
                    findings=tuple((str(i), int(s), str(why)) for i, s, why in json.loads(r[3])),
                    reported_at=r[4],
                )
                for r in rows
            ]
            return reports, int(rows[-1][5]) if rows else position

        return await self._db.read(work)
