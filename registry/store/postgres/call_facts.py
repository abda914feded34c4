"""The `call_facts` table in PostgreSQL: one row per call (registry.call_facts), the same as
SQLite's (registry.store.sqlite.call_facts), rewritten with its session's aggregate in the
transaction of every receipt batch that touches it, under the session's (or sessionless
call's) advisory lock (registry.store.postgres.sessions.store_aggregates); read by time
window for `meshwarden changes`."""

from __future__ import annotations

from typing import Any, Final

from meshwarden.registry.store.postgres.database import Connection
from meshwarden.registry.store.records import CallFact

_COLUMNS: Final = (
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
_INSERT: Final = (
    f"INSERT INTO call_facts ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(_COLUMNS) + 1))}) "
    "ON CONFLICT (call_id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
)


async def put(connection: Connection, session_ids: list[str], call_ids: list[str], rows: list[tuple[Any, ...]]) -> None:
    """Replaces the rows of the sessions `session_ids` and of the calls outside any session
    `call_ids` with `rows` (row_of each fact), inside the caller's transaction."""
    await connection.execute(
        "DELETE FROM call_facts WHERE session_id = ANY($1::text[]) OR (session_id = '' AND call_id = ANY($2::text[]))",
        session_ids,
        call_ids,
    )
    if rows:
        await connection.executemany(_INSERT, rows)


async def between(connection: Connection, since: float, until: float) -> list[CallFact]:
    rows = await connection.fetch(
        f"SELECT {', '.join(_COLUMNS)} FROM call_facts WHERE started_at >= $1 AND started_at < $2", since, until
    )
    return [_fact(row) for row in rows]


def row_of(f: CallFact) -> tuple[Any, ...]:
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


def _fact(row: Any) -> CallFact:
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
