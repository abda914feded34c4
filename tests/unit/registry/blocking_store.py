"""The blocking bridge (registry.store.sqlite.blocking) over a real database, opened and
closed as tests of approvals and budgets did before those aggregates move to the async seam."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from meshwarden.clock import Clock
from meshwarden.registry.audit import Audit
from meshwarden.registry.store.sqlite import stores_over
from meshwarden.registry.store.sqlite.blocking import BlockingStore, Row
from meshwarden.registry.store.sqlite.database import Database


class Store(BlockingStore):
    @classmethod
    def open(cls, data_dir: Path, *, event_log_retention: int = 10) -> Store:
        return cls(Database.open(data_dir))

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._database = db

    def close(self) -> None:
        self._database.close()

    def audit(self, clock: Clock) -> Audit:
        return Audit(stores_over(self._database, event_log_retention=10).audit, clock)

    def audit_actions(self) -> list[str]:
        return [str(row[0]) for row in self.query("SELECT action FROM audit_log ORDER BY id")]

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with super().transaction(durable=durable) as db:
            yield db

    def query(self, sql: str, parameters: tuple[object, ...] = ()) -> list[Row]:
        return super().query(sql, parameters)
