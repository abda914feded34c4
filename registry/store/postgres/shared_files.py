"""The files every replica must hold alike, kept in `shared_files`: the issuing CA, the
operator token, the task-signing key. The first replica to start makes them (or takes those
an operator put in its --data-dir) and stores them, under a transaction-level advisory lock so
that replicas starting together agree on one set; every replica then writes the stored ones
into its own --data-dir (0600) and loads them from there as a single registry would.

These are secrets: whoever can read the database can sign SVIDs for the mesh, as whoever can
read a single registry's data dir could. Restrict the database role accordingly (README).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from meshwarden.private_data import tighten_dir
from meshwarden.registry.errors import StoreError
from meshwarden.registry.private_files import read_private, write_private
from meshwarden.registry.store.postgres.database import Connection, Database

log = logging.getLogger(__name__)

_LOCK: Final = 7_400_003


class PostgresSharedFiles:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def sync(self, data_dir: Path, names: Sequence[str], make: Callable[[], None]) -> None:
        async def work(connection: Connection) -> None:
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
            stored = {
                str(r[0]): bytes(r[1])
                for r in await connection.fetch("SELECT name, content FROM shared_files WHERE name = ANY($1)", names)
            }
            if len(stored) == len(names):
                await asyncio.to_thread(_write_all, data_dir, stored)
                log.info("took the CA and credentials every replica shares from %s", self._db.location)
                return
            if stored:
                missing = sorted(set(names) - set(stored))
                raise StoreError(
                    f"{self._db.location} holds only some of the files every replica shares "
                    f"(missing {', '.join(missing)}); restore them from a backup"
                )
            made = await asyncio.to_thread(_make_and_read, data_dir, names, make)
            await connection.executemany(
                "INSERT INTO shared_files (name, content, created_at) VALUES ($1, $2, $3)",
                [(name, content, time.time()) for name, content in made.items()],
            )
            log.info("stored this replica's CA and credentials in %s for every replica", self._db.location)

        await self._db.write(work)


def _write_all(data_dir: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        path = data_dir / name
        tighten_dir(path.parent)
        if path.exists() and read_private(path) == content:
            continue
        if path.exists():
            log.warning("replacing %s with the one every replica shares (from the store)", path)
        write_private(path, content)


def _make_and_read(data_dir: Path, names: Sequence[str], make: Callable[[], None]) -> dict[str, bytes]:
    make()
    return {name: read_private(data_dir / name) for name in names}
