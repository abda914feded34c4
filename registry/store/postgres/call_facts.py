"""The `call_facts` table in PostgreSQL: one row per call (registry.call_facts), the same as
SQLite's (registry.store.sqlite.call_facts), rewritten with its session's aggregate in the
transaction of every receipt batch that touches it, under the session's (or sessionless
call's) advisory lock (registry.store.postgres.sessions.store_aggregates); read by time
window for `meshwarden changes`, or summed per kind, subject and value where they lie
(`change_sides`: a comparison reads one row per value and latency bucket, not one per call)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

from meshwarden.registry.store import call_fact_rows
from meshwarden.registry.store.postgres.database import Connection
from meshwarden.registry.store.records import CallFact, ChangeSide

_COLUMNS: Final = call_fact_rows.COLUMNS
_INSERT: Final = (
    f"INSERT INTO call_facts ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(_COLUMNS) + 1))}) "
    "ON CONFLICT (call_id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
)


async def put(connection: Connection, session_ids: list[str], call_ids: list[str], rows: list[tuple[Any, ...]]) -> None:
    """Replaces the rows of the sessions `session_ids` and of the calls outside any session
    `call_ids` with `rows` (call_fact_rows.row_of each fact), inside the caller's transaction."""
    await connection.execute(
        "DELETE FROM call_facts WHERE session_id = ANY($1::text[]) OR (session_id = '' AND call_id = ANY($2::text[]))",
        session_ids,
        call_ids,
    )
    if rows:
        await connection.executemany(_INSERT, rows)


async def between(
    connection: Connection, since: float, until: float, capabilities: Collection[str] | None = None
) -> list[CallFact]:
    sql = f"SELECT {', '.join(_COLUMNS)} FROM call_facts WHERE started_at >= $1 AND started_at < $2"
    if capabilities is None:
        rows = await connection.fetch(sql, since, until)
    else:
        rows = await connection.fetch(sql + " AND capability = ANY($3::text[])", since, until, sorted(capabilities))
    return [call_fact_rows.fact_of(row) for row in rows]


# Each kind's (subject, value, which calls carry one) as registry.session_changes._VALUES says.
_KINDS: Final = {
    "version": ("callee_agent", "version", "call_kind IN ('agent', '')"),
    "model": ("spender_agent", "model", "call_kind = 'model'"),
    "bundle": ("'mesh'", "CAST(bundle_revision AS TEXT)", "bundle_revision <> 0"),
    "tool_schema": ("tool", "tool_schema", "call_kind = 'tool'"),
}
_VALUED: Final = " UNION ALL ".join(
    f"SELECT '{kind}' AS kind, {subject} AS subject, {value} AS value, started_at, ok, cost_micro_usd, "
    f"session_id, latency_us FROM call_facts WHERE started_at >= $1 AND started_at < $2 AND {carried} "
    f"AND {subject} <> '' AND {value} <> ''"
    for kind, (subject, value, carried) in _KINDS.items()
)
# registry.session_changes.latency_bucket: 3 significant digits, exact below 1 ms
_BUCKET: Final = (
    "CASE WHEN f.latency_us < 1000 THEN f.latency_us WHEN f.latency_us < 10000 THEN f.latency_us / 10 * 10 "
    "WHEN f.latency_us < 100000 THEN f.latency_us / 100 * 100 WHEN f.latency_us < 1000000 THEN f.latency_us / 1000 * 1000 "
    "WHEN f.latency_us < 10000000 THEN f.latency_us / 10000 * 10000 ELSE f.latency_us / 100000 * 100000 END"
)
_SIDES: Final = (
    "SELECT f.kind, f.subject, f.value, min(f.started_at), count(*), count(*) FILTER (WHERE NOT f.ok), "
    "sum(f.cost_micro_usd), count(DISTINCT f.session_id) FILTER (WHERE o.outcome = 'succeeded') "
    f"FROM ({_VALUED}) f LEFT JOIN session_outcomes o ON o.session_id = f.session_id "
    "GROUP BY f.kind, f.subject, f.value"
)
_LATENCIES: Final = (
    f"SELECT f.kind, f.subject, f.value, {_BUCKET} AS bucket, count(*) FROM ({_VALUED}) f "
    "GROUP BY f.kind, f.subject, f.value, bucket ORDER BY f.kind, f.subject, f.value, bucket"
)


async def change_sides(connection: Connection, since: float, until: float) -> list[ChangeSide]:
    counted: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    for kind, subject, value, bucket, calls in await connection.fetch(_LATENCIES, since, until):
        counted.setdefault((kind, subject, value), []).append((int(bucket), int(calls)))
    return [call_fact_rows.side_of(row, counted) for row in await connection.fetch(_SIDES, since, until)]
