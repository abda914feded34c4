"""`meshwarden registry migrate`: the schema of either store brought up to date, once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from meshwarden.registry.store.sqlite import DB_NAME, SCHEMA_VERSION, Database
from meshwarden.registry.store.sqlite.migrations import version_on_disk


@dataclass(frozen=True, slots=True)
class Migrated:
    location: str
    before: int
    after: int


async def migrate_store(store: str, data_dir: Path) -> Migrated:
    """Migrates the PostgreSQL database at `store`, or (store "") the SQLite one in `data_dir`.
    Raises StoreError when it cannot (unreachable, newer than this code)."""
    if store:
        from meshwarden.registry.store.postgres import migrations
        from meshwarden.registry.store.postgres.database import Database as PostgresDatabase

        db = await PostgresDatabase.connect(store, min_size=1, max_size=1)
        try:
            before, after = await migrations.migrate(db)
        finally:
            await db.close()
        return Migrated(db.location, before, after)
    before = await asyncio.to_thread(version_on_disk, data_dir / DB_NAME)
    opened = await asyncio.to_thread(Database.open, data_dir)  # opening migrates it
    await asyncio.to_thread(opened.close)
    return Migrated(str(data_dir / DB_NAME), before, SCHEMA_VERSION)
