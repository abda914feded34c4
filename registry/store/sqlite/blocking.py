"""A bridge for the aggregates not yet behind the async seam (approvals, budgets): their SQL
lives here in the store package, but runs synchronously on the caller's thread, on the
writer connection, under the lock the writer thread also takes. It blocks the event loop
as these aggregates did before the seam; porting them to async stores (like
registry.store.sqlite.controls) removes this module.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from meshwarden.registry.errors import StoreError
from meshwarden.registry.store.receipt_columns import Row
from meshwarden.registry.store.sqlite.database import Database

__all__ = ["BlockingStore", "Row"]


class BlockingStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def path(self) -> Path:
        return self._db.path

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with self._db.writer_lock:
            connection = self._db.writer_connection
            try:
                if durable:
                    connection.execute("PRAGMA synchronous=FULL")
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield connection
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise StoreError(f"{self._db.path}: write failed: {exc}") from exc
            finally:
                if durable:
                    connection.execute("PRAGMA synchronous=NORMAL")

    def query(self, sql: str, parameters: tuple[object, ...] = ()) -> list[Row]:
        with self._db.writer_lock:
            try:
                return list(self._db.writer_connection.execute(sql, parameters).fetchall())
            except sqlite3.Error as exc:
                raise StoreError(f"{self._db.path}: read failed: {exc}") from exc
