"""The `call_facts` table in PostgreSQL: one row per call (registry.call_facts), the same as
SQLite's (registry.store.sqlite.call_facts), rewritten with its session's aggregate in the
transaction of every receipt batch that touches it, under the session's (or sessionless
call's) advisory lock (registry.store.postgres.sessions.store_aggregates); read by time
window for `meshwarden changes`, or summed per kind, subject and value where they lie
(`change_sides`: a comparison reads one row per value and latency bucket, not one per call)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

from meshwarden.registry.store.postgres.database import Connection
from meshwarden.registry.store.records import CallFact, ChangeSide

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


async def between(
    connection: Connection, since: float, until: float, capabilities: Collection[str] | None = None
) -> list[CallFact]:
    sql = f"SELECT {', '.join(_COLUMNS)} FROM call_facts WHERE started_at >= $1 AND started_at < $2"
    if capabilities is None:
        rows = await connection.fetch(sql, since, until)
    else:
        rows = await connection.fetch(sql + " AND capability = ANY($3::text[])", since, until, sorted(capabilities))
    return [_fact(row) for row in rows]


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
    return [
        ChangeSide(
            kind=str(row[0]),
            subject=str(row[1]),
            value=str(row[2]),
            first_at=float(row[3]),
            calls=int(row[4]),
            failures=int(row[5]),
            cost_micro_usd=int(row[6]),
            successful_sessions=int(row[7]),
            latencies=tuple(counted.get((row[0], row[1], row[2]), ())),
        )
        for row in await connection.fetch(_SIDES, since, until)
    ]


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
