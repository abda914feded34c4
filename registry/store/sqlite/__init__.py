"""The embedded default implementation of the storage seam: one SQLite file in the data dir
(`<data_dir>/registry.db`, WAL mode), worked on by a writer thread and a reader thread
(registry.store.sqlite.database), with the schema as ordered steps (.migrations)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from meshwarden.registry.store import Stores
from meshwarden.registry.store.sqlite.agent_activity import SqliteAgentActivity
from meshwarden.registry.store.sqlite.approvals import SqliteApprovals
from meshwarden.registry.store.sqlite.audit import SqliteAudit
from meshwarden.registry.store.sqlite.budgets import SqliteBudgets
from meshwarden.registry.store.sqlite.bundles import SqliteBundles
from meshwarden.registry.store.sqlite.catalog import SqliteCatalog, SqliteLeases
from meshwarden.registry.store.sqlite.controls import SqliteControls
from meshwarden.registry.store.sqlite.database import DB_NAME, LOCK_NAME, Database
from meshwarden.registry.store.sqlite.join_tokens import SqliteJoinTokens
from meshwarden.registry.store.sqlite.migrations import SCHEMA_VERSION, STEPS
from meshwarden.registry.store.sqlite.outcomes import SqliteOutcomes
from meshwarden.registry.store.sqlite.receipts import SqliteReceipts
from meshwarden.registry.store.sqlite.routes import SqliteRoutes
from meshwarden.registry.store.sqlite.sessions import SqliteSessions, fill_missing
from meshwarden.registry.store.sqlite.tasks import SqliteTasks
from meshwarden.v1 import receipts_pb2

log = logging.getLogger(__name__)

__all__ = ["DB_NAME", "LOCK_NAME", "SCHEMA_VERSION", "STEPS", "Database", "open_sqlite", "stores_over"]


async def open_sqlite(data_dir: Path, *, event_log_retention: int) -> Stores:
    """Opens (creating, locking and migrating) the database in `data_dir` off the event loop.
    Raises StoreError when the directory or the database cannot be used."""
    db = await asyncio.to_thread(Database.open, data_dir)
    filled = await db.write(lambda c: fill_missing(c, receipts_pb2.Receipt.FromString))
    if filled:
        log.info("computed the aggregates of %d sessions stored before they were kept", filled)
    stores = stores_over(db, event_log_retention=event_log_retention)
    log.info("opened %s at catalog revision %d", db.path, await stores.catalog.revision())
    return stores


def stores_over(db: Database, *, event_log_retention: int) -> Stores:
    """Every aggregate's store over `db`; closing them closes `db`."""

    async def close() -> None:
        await asyncio.to_thread(db.close)

    return Stores(
        catalog=SqliteCatalog(db, event_log_retention=event_log_retention),
        leases=SqliteLeases(db),
        bundles=SqliteBundles(db),
        routes=SqliteRoutes(db),
        controls=SqliteControls(db),
        audit=SqliteAudit(db),
        receipts=SqliteReceipts(db),
        outcomes=SqliteOutcomes(db),
        sessions=(sessions := SqliteSessions(db)),
        session_signals=sessions,
        join_tokens=SqliteJoinTokens(db),
        approvals=SqliteApprovals(db),
        agent_activity=SqliteAgentActivity(db),
        budgets=SqliteBudgets(db),
        tasks=SqliteTasks(db),
        location=str(db.path),
        close=close,
    )
