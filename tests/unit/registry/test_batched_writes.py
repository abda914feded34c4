"""Database.write_batched: writes queued together commit together, yet each one's failure is
its own (a real SQLite database in a temporary directory)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from meshwarden.registry.errors import StoreError
from meshwarden.registry.store.sqlite import Database


class Refused(Exception):
    pass


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    opened = await asyncio.to_thread(Database.open, tmp_path)
    await opened.write(lambda c: c.execute("CREATE TABLE t (k TEXT PRIMARY KEY)"))
    yield opened
    await asyncio.to_thread(opened.close)


def _insert(key: str, *, then_fail: BaseException | None = None) -> Callable[[sqlite3.Connection], str]:
    def work(c: sqlite3.Connection) -> str:
        c.execute("INSERT INTO t (k) VALUES (?)", (key,))
        if then_fail is not None:
            raise then_fail
        return key

    return work


async def test_each_work_gets_its_own_result_or_error_and_a_failure_undoes_only_itself(db: Database) -> None:
    results = await asyncio.gather(
        db.write_batched(_insert("a")),
        db.write_batched(_insert("b", then_fail=Refused())),
        db.write_batched(_insert("a")),  # a duplicate key: SQLite refuses
        db.write_batched(_insert("c")),
        return_exceptions=True,
    )
    assert results[0] == "a" and results[3] == "c"
    assert isinstance(results[1], Refused)
    assert isinstance(results[2], StoreError) and "UNIQUE" in str(results[2])
    rows = await db.read(lambda c: [r[0] for r in c.execute("SELECT k FROM t ORDER BY k")])
    assert rows == ["a", "c"]


async def test_a_thousand_concurrent_writes_all_commit(db: Database) -> None:
    keys = [f"k{i}" for i in range(1000)]
    assert await asyncio.gather(*(db.write_batched(_insert(k)) for k in keys)) == keys
    assert await db.read(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()[0]) == 1000
