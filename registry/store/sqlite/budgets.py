"""Budgets in SQLite: every statement on the budgets, budget_spend and budget_slices tables
(schema: registry.store.sqlite.migrations), and nowhere else.

`SqliteBudgets.write(work)` runs `work` on `SqliteBudgetRows` inside one write transaction on
the database's writer thread, so registry.budgets decides (grant, recall, charge) between
reads and writes that commit together without holding the event loop; `read` runs it on the
reader thread, on a connection that cannot write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import TypeVar

from meshwarden.registry.store.budget_codec import (
    BUDGET_COLUMNS,
    SLICE_COLUMNS,
    SPEND_COLUMNS,
    budget_from_row,
    slice_from_row,
    spend_from_row,
)
from meshwarden.registry.store.records import AuditEntry, BudgetRow, SliceRow, SpendRow
from meshwarden.registry.store.sqlite import audit
from meshwarden.registry.store.sqlite.database import Database

T = TypeVar("T")


class SqliteBudgetRows:
    """Reads and writes inside one transaction (registry.store.BudgetRows)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    async def budgets(self) -> list[BudgetRow]:
        rows = self._db.execute(f"SELECT {BUDGET_COLUMNS} FROM budgets ORDER BY created_at, id").fetchall()
        return [budget_from_row(r) for r in rows]

    async def budget(self, budget_id: str) -> BudgetRow | None:
        row = self._db.execute(f"SELECT {BUDGET_COLUMNS} FROM budgets WHERE id = ?", (budget_id,)).fetchone()
        return None if row is None else budget_from_row(row)

    async def budget_for(self, scope: int, value: str, period: int) -> BudgetRow | None:
        row = self._db.execute(
            f"SELECT {BUDGET_COLUMNS} FROM budgets WHERE scope = ? AND scope_value = ? AND period = ?",
            (scope, value, period),
        ).fetchone()
        return None if row is None else budget_from_row(row)

    async def put_budget(self, budget: BudgetRow) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO budgets ({BUDGET_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                budget.id,
                budget.scope,
                budget.scope_value,
                budget.period,
                budget.limit_micro_usd,
                budget.soft_limit_micro_usd,
                budget.reason,
                budget.created_by,
                budget.created_at,
            ),
        )

    async def delete_budget(self, budget_id: str) -> None:
        self._db.execute("DELETE FROM budgets WHERE id = ?", (budget_id,))
        self._db.execute("UPDATE budget_slices SET live = 0 WHERE budget_id = ?", (budget_id,))

    async def bump_revision(self) -> None:
        self._db.execute("UPDATE meta SET value = value + 1 WHERE key = 'budgets_revision'")

    async def revision(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'budgets_revision'").fetchone()[0])

    async def spend(self, budget_id: str, period_key: str, subject: str) -> SpendRow:
        row = self._db.execute(
            f"SELECT {SPEND_COLUMNS} FROM budget_spend WHERE budget_id = ? AND period_key = ? AND subject = ?",
            (budget_id, period_key, subject),
        ).fetchone()
        return SpendRow(subject=subject, spent_micro_usd=0, soft_crossed=False) if row is None else spend_from_row(row)

    async def spends(self, budget_id: str, period_key: str) -> list[SpendRow]:
        rows = self._db.execute(
            f"SELECT {SPEND_COLUMNS} FROM budget_spend WHERE budget_id = ? AND period_key = ?",
            (budget_id, period_key),
        ).fetchall()
        return [spend_from_row(r) for r in rows]

    async def charge(self, budget_id: str, period_key: str, subject: str, micro_usd: int, now: float) -> None:
        self._db.execute(
            "INSERT INTO budget_spend (budget_id, period_key, subject, spent_micro_usd, soft_crossed, updated_at) "
            "VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (budget_id, period_key, subject) DO UPDATE SET "
            "spent_micro_usd = spent_micro_usd + excluded.spent_micro_usd, updated_at = excluded.updated_at",
            (budget_id, period_key, subject, micro_usd, now),
        )

    async def mark_soft_crossed(self, budget_id: str, period_key: str, subject: str) -> None:
        self._db.execute(
            "UPDATE budget_spend SET soft_crossed = 1 WHERE budget_id = ? AND period_key = ? AND subject = ?",
            (budget_id, period_key, subject),
        )

    async def slices(self, budget_id: str, period_key: str, subject: str) -> list[SliceRow]:
        rows = self._db.execute(
            f"SELECT {SLICE_COLUMNS} FROM budget_slices "
            "WHERE budget_id = ? AND period_key = ? AND subject = ? AND live = 1",
            (budget_id, period_key, subject),
        ).fetchall()
        return [slice_from_row(r) for r in rows]

    async def live_slices_of(self, budget_id: str, period_key: str) -> list[SliceRow]:
        rows = self._db.execute(
            f"SELECT {SLICE_COLUMNS} FROM budget_slices WHERE budget_id = ? AND period_key = ? AND live = 1",
            (budget_id, period_key),
        ).fetchall()
        return [slice_from_row(r) for r in rows]

    async def slice(self, slice_id: str) -> SliceRow | None:
        row = self._db.execute(f"SELECT {SLICE_COLUMNS} FROM budget_slices WHERE id = ?", (slice_id,)).fetchone()
        return None if row is None else slice_from_row(row)

    async def put_slice(self, s: SliceRow) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO budget_slices ({SLICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                s.id,
                s.budget_id,
                s.period_key,
                s.subject,
                s.holder_instance_id,
                s.holder_spiffe_id,
                s.granted_micro_usd,
                s.used_micro_usd,
                s.in_flight_micro_usd,
                s.expires_at,
                int(s.recalled),
                int(s.live),
            ),
        )

    async def recall(self, slice_ids: list[str]) -> None:
        self._db.executemany("UPDATE budget_slices SET recalled = 1 WHERE id = ?", [(i,) for i in slice_ids])

    async def lapsed(self, now: float) -> list[SliceRow]:
        """Live slices whose holder stopped renewing them."""
        rows = self._db.execute(
            f"SELECT {SLICE_COLUMNS} FROM budget_slices WHERE live = 1 AND expires_at <= ?", (now,)
        ).fetchall()
        return [slice_from_row(r) for r in rows]

    async def end_slices(self, slice_ids: list[str]) -> None:
        self._db.executemany("UPDATE budget_slices SET live = 0 WHERE id = ?", [(i,) for i in slice_ids])

    async def purge_ended(self, before: float) -> int:
        cursor = self._db.execute("DELETE FROM budget_slices WHERE live = 0 AND expires_at < ?", (before,))
        return cursor.rowcount

    async def audit(self, entry: AuditEntry) -> None:
        audit.append(self._db, entry)


class SqliteBudgets:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def write(self, work: Callable[[SqliteBudgetRows], Awaitable[T]]) -> T:
        return await self._db.write(lambda db: _to_the_end(work(SqliteBudgetRows(db))))

    async def read(self, work: Callable[[SqliteBudgetRows], Awaitable[T]]) -> T:
        return await self._db.read(lambda db: _to_the_end(work(SqliteBudgetRows(db))))


def _to_the_end(work: Awaitable[T]) -> T:
    """Runs a unit of work on the calling (database) thread: it awaits only SqliteBudgetRows,
    whose coroutines never suspend, so one step runs it to its end. Work that would suspend
    (other I/O, a sleep) breaks BudgetStore's contract and is refused, rolling back."""
    steps = work.__await__()
    try:
        steps.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    close = getattr(steps, "close", None)
    if close is not None:
        close()
    raise RuntimeError("budget work awaited something other than its rows (registry.store.BudgetStore)")
