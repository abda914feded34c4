"""How both stores lay out a call fact and a side of a change: one column order, encoded and
decoded here, so the SQLite and PostgreSQL statements that name these columns read the same
rows (registry.call_facts says what a fact is)."""

from __future__ import annotations

from typing import Any, Final

from meshwarden.registry.store.records import CallFact, ChangeSide

COLUMNS: Final = (
    "call_id",
    "session_id",
    "started_at",
    "latency_us",
    "ok",
    "cost_micro_usd",
    "capability",
    "call_kind",
    "callee_agent",
    "version",
    "spender_agent",
    "model",
    "bundle_revision",
    "tool",
    "tool_schema",
)


def row_of(f: CallFact) -> tuple[Any, ...]:
    """A fact as a row of COLUMNS."""
    return (
        f.call_id,
        f.session_id,
        f.started_at,
        f.latency_us,
        f.ok,
        f.cost_micro_usd,
        f.capability,
        f.call_kind,
        f.callee_agent,
        f.version,
        f.spender_agent,
        f.model,
        f.bundle_revision,
        f.tool,
        f.tool_schema,
    )


def fact_of(row: Any) -> CallFact:
    """A row of COLUMNS, from either store's driver (tuples or records)."""
    return CallFact(
        call_id=str(row[0]),
        session_id=str(row[1]),
        started_at=float(row[2]),
        latency_us=int(row[3]),
        ok=bool(row[4]),
        cost_micro_usd=int(row[5]),
        capability=str(row[6]),
        call_kind=str(row[7]),
        callee_agent=str(row[8]),
        version=str(row[9]),
        spender_agent=str(row[10]),
        model=str(row[11]),
        bundle_revision=int(row[12]),
        tool=str(row[13]),
        tool_schema=str(row[14]),
    )


def side_of(row: Any, latencies: dict[tuple[str, str, str], list[tuple[int, int]]]) -> ChangeSide:
    """A row of (kind, subject, value, first_at, calls, failures, cost, successful sessions),
    with its counted latencies (bucket, calls) looked up by (kind, subject, value)."""
    kind, subject, value = str(row[0]), str(row[1]), str(row[2])
    return ChangeSide(
        kind=kind,
        subject=subject,
        value=value,
        first_at=float(row[3]),
        calls=int(row[4]),
        failures=int(row[5]),
        cost_micro_usd=int(row[6]),
        successful_sessions=int(row[7]),
        latencies=tuple(latencies.get((kind, subject, value), ())),
    )
