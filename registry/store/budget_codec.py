"""How the stores keep budgets, spend and slices: the column lists their statements name, and
the rows read back in that order. Shared by every implementation of the seam, so SQLite and
PostgreSQL store and read the same."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from meshwarden.registry.store.records import BudgetRow, SliceRow, SpendRow

BUDGET_COLUMNS: Final = (
    "id, scope, scope_value, period, limit_micro_usd, soft_limit_micro_usd, reason, created_by, created_at"
)
SLICE_COLUMNS: Final = (
    "id, budget_id, period_key, subject, holder_instance_id, holder_spiffe_id, granted_micro_usd, used_micro_usd, "
    "in_flight_micro_usd, expires_at, recalled, live"
)
SPEND_COLUMNS: Final = "subject, spent_micro_usd, soft_crossed"


def budget_from_row(r: Sequence[Any]) -> BudgetRow:
    return BudgetRow(
        id=str(r[0]),
        scope=int(r[1]),
        scope_value=str(r[2]),
        period=int(r[3]),
        limit_micro_usd=int(r[4]),
        soft_limit_micro_usd=int(r[5]),
        reason=str(r[6]),
        created_by=str(r[7]),
        created_at=float(r[8]),
    )


def spend_from_row(r: Sequence[Any]) -> SpendRow:
    return SpendRow(subject=str(r[0]), spent_micro_usd=int(r[1]), soft_crossed=bool(r[2]))


def slice_from_row(r: Sequence[Any]) -> SliceRow:
    return SliceRow(
        id=str(r[0]),
        budget_id=str(r[1]),
        period_key=str(r[2]),
        subject=str(r[3]),
        holder_instance_id=str(r[4]),
        holder_spiffe_id=str(r[5]),
        granted_micro_usd=int(r[6]),
        used_micro_usd=int(r[7]),
        in_flight_micro_usd=int(r[8]),
        expires_at=float(r[9]),
        recalled=bool(r[10]),
        live=bool(r[11]),
    )
