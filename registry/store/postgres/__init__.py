"""The PostgreSQL implementation of the storage seam, for several registry replicas on one
database: an asyncpg pool (.database), the schema as ordered steps (.migrations), the change
feed replicas follow (.changes), the advisory lock that picks who does singleton work
(.leadership) and the files every replica shares (.shared_files)."""

from __future__ import annotations

import logging

from meshwarden.registry.store import Stores
from meshwarden.registry.store.postgres import migrations
from meshwarden.registry.store.postgres.agent_activity import PostgresAgentActivity
from meshwarden.registry.store.postgres.approvals import PostgresApprovals
from meshwarden.registry.store.postgres.audit import PostgresAudit
from meshwarden.registry.store.postgres.budgets import PostgresBudgets
from meshwarden.registry.store.postgres.bundles import PostgresBundles
from meshwarden.registry.store.postgres.catalog import PostgresCatalog, PostgresLeases
from meshwarden.registry.store.postgres.changes import PostgresChangeFeed
from meshwarden.registry.store.postgres.control_watchers import PostgresControlWatchers
from meshwarden.registry.store.postgres.controls import PostgresControls
from meshwarden.registry.store.postgres.database import Database, redacted
from meshwarden.registry.store.postgres.health_reports import PostgresHealthReports
from meshwarden.registry.store.postgres.join_tokens import PostgresJoinTokens
from meshwarden.registry.store.postgres.leadership import PostgresLeadership
from meshwarden.registry.store.postgres.migrations import SCHEMA_VERSION, STEPS
from meshwarden.registry.store.postgres.outcomes import PostgresOutcomes
from meshwarden.registry.store.postgres.receipts import PostgresReceipts
from meshwarden.registry.store.postgres.routes import PostgresRoutes
from meshwarden.registry.store.postgres.sessions import PostgresSessions, fill_missing
from meshwarden.registry.store.postgres.shared_files import PostgresSharedFiles
from meshwarden.registry.store.postgres.tasks import PostgresTasks

log = logging.getLogger(__name__)

__all__ = ["SCHEMA_VERSION", "STEPS", "Database", "PostgresLeadership", "open_postgres", "redacted", "stores_over"]


async def open_postgres(url: str, *, event_log_retention: int, migrate: bool = False) -> Stores:
    """Connects to the database at `url` ("" for the PG* variables) and checks its schema (or
    brings it up to date with `migrate`). Raises StoreError when it cannot be used."""
    db = await Database.connect(url)
    try:
        if migrate:
            await migrations.migrate(db)
        else:
            await migrations.check(db)
        filled = await fill_missing(db)
    except BaseException:
        await db.close()
        raise
    if filled:
        log.info("computed the aggregates of %d sessions stored before they were kept", filled)
    stores = stores_over(db, event_log_retention=event_log_retention)
    log.info("opened %s at catalog revision %d", db.location, await stores.catalog.revision())
    return stores


def stores_over(db: Database, *, event_log_retention: int) -> Stores:
    """Every aggregate's store over `db`; closing them closes `db`."""
    feed = PostgresChangeFeed(db)

    async def close() -> None:
        await feed.close()
        await db.close()

    return Stores(
        catalog=PostgresCatalog(db, event_log_retention=event_log_retention),
        leases=PostgresLeases(db),
        bundles=PostgresBundles(db),
        routes=PostgresRoutes(db),
        controls=PostgresControls(db),
        audit=PostgresAudit(db),
        receipts=PostgresReceipts(db),
        outcomes=PostgresOutcomes(db),
        sessions=(sessions := PostgresSessions(db)),
        session_signals=sessions,
        control_watchers=PostgresControlWatchers(db),
        join_tokens=PostgresJoinTokens(db),
        approvals=PostgresApprovals(db),
        agent_activity=PostgresAgentActivity(db),
        budgets=PostgresBudgets(db),
        tasks=PostgresTasks(db),
        feed=feed,
        leadership=PostgresLeadership(db),
        shared_files=PostgresSharedFiles(db),
        health_reports=PostgresHealthReports(db),
        location=db.location,
        close=close,
    )
