"""Budgets in PostgreSQL: every statement on the budgets, budget_spend and budget_slices tables.

`write(work)` runs `work` on `PostgresBudgetRows` inside one transaction that first takes a
transaction-level advisory lock shared by every budget write: registry.budgets decides (grant,
recall, charge) between reads and writes, and two replicas granting slices of one budget at
once must not both see the same room. Budget writes are small and few per second (a slice
lasts seconds and is renewed in batches), so one lock for all of them costs nothing measurable.
`read` runs it in a read-only REPEATABLE READ transaction (a consistent view).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from meshwarden.registry.store.budget_codec import (
    BUDGET_COLUMNS,
    SLICE_COLUMNS,
    SPEND_COLUMNS,
    budget_from_row,
    slice_from_row,
    spend_from_row,
)
from meshwarden.registry.store.postgres import audit
from meshwarden.registry.store.postgres.changes import notify
from meshwarden.registry.store.postgres.database import Connection, Database
from meshwarden.registry.store.records import AuditEntry, BudgetRow, SliceRow, SpendRow

T = TypeVar("T")
BUDGET_LOCK: Final = 7_400_004


class PostgresBudgetRows:
    """Reads and writes inside one transaction (registry.store.BudgetRows)."""

    def __init__(self, connection: Connection) -> None:
        self._c = connection

    async def budgets(self) -> list[BudgetRow]:
        rows = await self._c.fetch(f"SELECT {BUDGET_COLUMNS} FROM budgets ORDER BY created_at, id")
        return [budget_from_row(r) for r in rows]

    async def budget(self, budget_id: str) -> BudgetRow | None:
        row = await self._c.fetchrow(f"SELECT {BUDGET_COLUMNS} FROM budgets WHERE id = $1", budget_id)
        return None if row is None else budget_from_row(row)

    async def budget_for(self, scope: int, value: str, period: int) -> BudgetRow | None:
        row = await self._c.fetchrow(
            f"SELECT {BUDGET_COLUMNS} FROM budgets WHERE scope = $1 AND scope_value = $2 AND period = $3",
            scope,
            value,
            period,
        )
        return None if row is None else budget_from_row(row)

    async def put_budget(self, budget: BudgetRow) -> None:
        await self._c.execute(
            f"INSERT INTO budgets ({BUDGET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
            "ON CONFLICT (id) DO UPDATE SET scope = excluded.scope, scope_value = excluded.scope_value, "
            "period = excluded.period, limit_micro_usd = excluded.limit_micro_usd, "
            "soft_limit_micro_usd = excluded.soft_limit_micro_usd, reason = excluded.reason, "
            "created_by = excluded.created_by, created_at = excluded.created_at",
            budget.id,
            budget.scope,
            budget.scope_value,
            budget.period,
            budget.limit_micro_usd,
            budget.soft_limit_micro_usd,
            budget.reason,
            budget.created_by,
            budget.created_at,
        )

    async def delete_budget(self, budget_id: str) -> None:
        await self._c.execute("DELETE FROM budgets WHERE id = $1", budget_id)
        await self._c.execute("UPDATE budget_slices SET live = FALSE WHERE budget_id = $1", budget_id)

    async def bump_revision(self) -> None:
        await self._c.execute("UPDATE meta SET value = value + 1 WHERE key = 'budgets_revision'")
        await notify(self._c)  # other replicas' budget watchers (registry.replicas)

    async def revision(self) -> int:
        return int(await self._c.fetchval("SELECT value FROM meta WHERE key = 'budgets_revision'"))

    async def spend(self, budget_id: str, period_key: str, subject: str) -> SpendRow:
        row = await self._c.fetchrow(
            f"SELECT {SPEND_COLUMNS} FROM budget_spend WHERE budget_id = $1 AND period_key = $2 AND subject = $3",
            budget_id,
            period_key,
            subject,
        )
        return SpendRow(subject=subject, spent_micro_usd=0, soft_crossed=False) if row is None else spend_from_row(row)

    async def spends(self, budget_id: str, period_key: str) -> list[SpendRow]:
        rows = await self._c.fetch(
            f"SELECT {SPEND_COLUMNS} FROM budget_spend WHERE budget_id = $1 AND period_key = $2",
            budget_id,
            period_key,
        )
        return [spend_from_row(r) for r in rows]

    async def charge(self, budget_id: str, period_key: str, subject: str, micro_usd: int, now: float) -> None:
        await self._c.execute(
            "INSERT INTO budget_spend (budget_id, period_key, subject, spent_micro_usd, soft_crossed, updated_at) "
            "VALUES ($1, $2, $3, $4, FALSE, $5) ON CONFLICT (budget_id, period_key, subject) DO UPDATE SET "
            "spent_micro_usd = budget_spend.spent_micro_usd + excluded.spent_micro_usd, "
            "updated_at = excluded.updated_at",
            budget_id,
            period_key,
            subject,
            micro_usd,
            now,
        )

    async def mark_soft_crossed(self, budget_id: str, period_key: str, subject: str) -> None:
        await self._c.execute(
            "UPDATE budget_spend SET soft_crossed = TRUE WHERE budget_id = $1 AND period_key = $2 AND subject = $3",
            budget_id,
            period_key,
            subject,
        )

    async def slices(self, budget_id: str, period_key: str, subject: str) -> list[SliceRow]:
        rows = await self._c.fetch(
            f"SELECT {SLICE_COLUMNS} FROM budget_slices "
            "WHERE budget_id = $1 AND period_key = $2 AND subject = $3 AND live",
            budget_id,
            period_key,
            subject,
        )
        return [slice_from_row(r) for r in rows]

    async def live_slices_of(self, budget_id: str, period_key: str) -> list[SliceRow]:
        rows = await self._c.fetch(
            f"SELECT {SLICE_COLUMNS} FROM budget_slices WHERE budget_id = $1 AND period_key = $2 AND live",
            budget_id,
            period_key,
        )
        return [slice_from_row(r) for r in rows]

    async def slice(self, slice_id: str) -> SliceRow | None:
        row = await self._c.fetchrow(f"SELECT {SLICE_COLUMNS} FROM budget_slices WHERE id = $1", slice_id)
        return None if row is None else slice_from_row(row)

    async def put_slice(self, s: SliceRow) -> None:
        await self._c.execute(
            f"INSERT INTO budget_slices ({SLICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
            "ON CONFLICT (id) DO UPDATE SET budget_id = excluded.budget_id, period_key = excluded.period_key, "
            "subject = excluded.subject, holder_instance_id = excluded.holder_instance_id, "
            "holder_spiffe_id = excluded.holder_spiffe_id, granted_micro_usd = excluded.granted_micro_usd, "
            "used_micro_usd = excluded.used_micro_usd, in_flight_micro_usd = excluded.in_flight_micro_usd, "
            "expires_at = excluded.expires_at, recalled = excluded.recalled, live = excluded.live",
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
            s.recalled,
            s.live,
        )

    async def recall(self, slice_ids: list[str]) -> None:
        await self._c.execute("UPDATE budget_slices SET recalled = TRUE WHERE id = ANY($1::text[])", slice_ids)

    async def lapsed(self, now: float) -> list[SliceRow]:
        rows = await self._c.fetch(f"SELECT {SLICE_COLUMNS} FROM budget_slices WHERE live AND expires_at <= $1", now)
        return [slice_from_row(r) for r in rows]

    async def end_slices(self, slice_ids: list[str]) -> None:
        await self._c.execute("UPDATE budget_slices SET live = FALSE WHERE id = ANY($1::text[])", slice_ids)

    async def purge_ended(self, before: float) -> int:
        status = await self._c.execute("DELETE FROM budget_slices WHERE NOT live AND expires_at < $1", before)
        return int(status.split()[-1])

    async def audit(self, entry: AuditEntry) -> None:
        await audit.append(self._c, entry)


class PostgresBudgets:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def write(self, work: Callable[[PostgresBudgetRows], Awaitable[T]]) -> T:
        async def locked(connection: Connection) -> T:
            await connection.execute("SELECT pg_advisory_xact_lock($1)", BUDGET_LOCK)
            return await work(PostgresBudgetRows(connection))

        return await self._db.write(locked)

    async def read(self, work: Callable[[PostgresBudgetRows], Awaitable[T]]) -> T:
        return await self._db.read(lambda connection: work(PostgresBudgetRows(connection)))
