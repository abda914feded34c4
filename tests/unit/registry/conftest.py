"""Fixtures of the registry's unit tests: the storage seam over a real database, each test
once per store (SQLite in a temporary directory, PostgreSQL in a throwaway cluster:
tests/postgres_cluster), so both implementations meet the same contract."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from meshwarden.registry.store import Stores
from meshwarden.registry.store.sqlite import DB_NAME, open_sqlite
from tests.postgres_cluster import Cluster, fresh_database

_URL = pytest.StashKey[str]()

# What a test that fakes a database from before the receipts' task column (the last SQLite
# step) runs too, since that step adds a column, which no statement adds only if missing.
# What the later steps that ADD COLUMN did, undone, so a test can make an older database (an
# ALTER TABLE ... ADD COLUMN cannot run twice): receipts.task_id, join_tokens.created_by(_claim).
WITHOUT_JOIN_TOKEN_MAKER = (
    "ALTER TABLE join_tokens DROP COLUMN created_by; ALTER TABLE join_tokens DROP COLUMN created_by_claim; "
)
WITHOUT_RECEIPT_TASK_COLUMN = (
    "DROP INDEX receipts_by_task; ALTER TABLE receipts DROP COLUMN task_id; " + WITHOUT_JOIN_TOKEN_MAKER
)


@pytest.fixture(params=["sqlite", "postgresql"])
async def stores(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    if request.param == "sqlite":
        opened = await open_sqlite(tmp_path / "data", event_log_retention=100)
    else:
        from meshwarden.registry.store.postgres import open_postgres

        cluster: Cluster = request.getfixturevalue("postgres_cluster")
        url = fresh_database(cluster, request.getfixturevalue("postgres_template"))
        request.node.stash[_URL] = url
        opened = await open_postgres(url, event_log_retention=100)
    yield opened
    await opened.close()


class RawSql:
    """What someone with access to the database would do behind the registry's back
    (statements with `?` placeholders, run on whichever store the test got)."""

    def __init__(self, sqlite_path: Path, postgres_url: str | None) -> None:
        self._path, self._url = sqlite_path, postgres_url

    def __call__(self, statement: str, *parameters: object) -> None:
        self.rows(statement, *parameters)

    def rows(self, statement: str, *parameters: object) -> list[tuple[Any, ...]]:
        if self._url is None:
            db = sqlite3.connect(self._path)
            try:
                found = db.execute(statement, parameters).fetchall()
                db.commit()
            finally:
                db.close()
            return found
        numbered = iter(range(1, 1000))
        sql = re.sub(r"\?", lambda _: f"${next(numbered)}", statement)
        url = self._url

        async def run() -> list[tuple[Any, ...]]:
            import asyncpg

            connection = await asyncpg.connect(url)
            try:
                return [tuple(r) for r in await connection.fetch(sql, *parameters)]
            finally:
                await connection.close()

        with concurrent.futures.ThreadPoolExecutor(1) as thread:  # the test runs inside an event loop
            return thread.submit(asyncio.run, run()).result()


@pytest.fixture
def raw_sql(stores: Stores, tmp_path: Path, request: pytest.FixtureRequest) -> RawSql:
    return RawSql(tmp_path / "data" / DB_NAME, request.node.stash.get(_URL, None))


@pytest.fixture
def sqlite_only(request: pytest.FixtureRequest) -> None:
    """For tests of what only the SQLite store does (its file, its lock, its writer thread) or
    has so far."""
    if getattr(request.node, "callspec", None) and request.node.callspec.params.get("stores") == "postgresql":
        pytest.skip("about the SQLite store (or what the PostgreSQL store does not do yet)")
