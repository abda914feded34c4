"""The `call_facts` table in SQLite: one row per call (registry.call_facts), rewritten with its
session's aggregate in the transaction of every receipt batch that touches it
(registry.store.sqlite.sessions.store_aggregates), read by time window for `meshwarden
changes`, or summed per kind, subject and value where they lie (`change_sides`: a comparison
reads one row per value and latency bucket, not one per call). Kept apart from the aggregates
so each store can add it on its own."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable
from typing import Final

from meshwarden.registry.store import call_fact_rows
from meshwarden.registry.store.records import CallFact, ChangeSide

COLUMNS: Final = ", ".join(call_fact_rows.COLUMNS)


def put(db: sqlite3.Connection, owner: str, facts: Iterable[CallFact], *, in_session: bool) -> None:
    """Replaces the rows of a session (`owner` its id), or of one call outside any session."""
    if in_session:
        db.execute("DELETE FROM call_facts WHERE session_id = ?", (owner,))
    else:
        db.execute("DELETE FROM call_facts WHERE call_id = ? AND session_id = ''", (owner,))
    db.executemany(
        f"INSERT OR REPLACE INTO call_facts ({COLUMNS}) VALUES ({', '.join('?' * len(call_fact_rows.COLUMNS))})",
        [call_fact_rows.row_of(f) for f in facts],
    )


def between(
    db: sqlite3.Connection, since: float, until: float, capabilities: Collection[str] | None = None
) -> list[CallFact]:
    sql = f"SELECT {COLUMNS} FROM call_facts WHERE started_at >= ? AND started_at < ?"
    if capabilities is not None:
        sql += f" AND capability IN ({', '.join('?' * len(capabilities))})"
    rows = db.execute(sql, (since, until, *(capabilities or ())))
    return [call_fact_rows.fact_of(row) for row in rows]


# Each kind's (subject, value, which calls carry one) as registry.session_changes._VALUES says.
_KINDS: Final = {
    "version": ("callee_agent", "version", "call_kind IN ('agent', '')"),
    "model": ("spender_agent", "model", "call_kind = 'model'"),
    "bundle": ("'mesh'", "CAST(bundle_revision AS TEXT)", "bundle_revision != 0"),
    "tool_schema": ("tool", "tool_schema", "call_kind = 'tool'"),
}
# `{start}` is "started_at" (the window read through the index) or "+started_at" (the table
# scanned: for a window over most of it, several times faster than a lookup per index entry).
_VALUED: Final = " UNION ALL ".join(
    f"SELECT '{kind}' AS kind, {subject} AS subject, {value} AS value, started_at, ok, cost_micro_usd, "
    f"session_id, latency_us FROM call_facts WHERE {{start}} >= :since AND {{start}} < :until AND {carried} "
    f"AND {subject} != '' AND {value} != ''"
    for kind, (subject, value, carried) in _KINDS.items()
)
_SCAN_ABOVE: Final = 0.2  # the share of the stored time range a window covers, above which the table is scanned
# registry.session_changes.latency_bucket: 3 significant digits, exact below 1 ms
_BUCKET: Final = (
    "CASE WHEN f.latency_us < 1000 THEN f.latency_us WHEN f.latency_us < 10000 THEN f.latency_us / 10 * 10 "
    "WHEN f.latency_us < 100000 THEN f.latency_us / 100 * 100 WHEN f.latency_us < 1000000 THEN f.latency_us / 1000 * 1000 "
    "WHEN f.latency_us < 10000000 THEN f.latency_us / 10000 * 10000 ELSE f.latency_us / 100000 * 100000 END"
)
_SIDES: Final = (
    "SELECT f.kind, f.subject, f.value, min(f.started_at), count(*), sum(CASE WHEN f.ok THEN 0 ELSE 1 END), "
    "sum(f.cost_micro_usd), count(DISTINCT CASE WHEN o.outcome = 'succeeded' THEN f.session_id END) "
    f"FROM ({_VALUED}) f LEFT JOIN session_outcomes o ON o.session_id = f.session_id "
    "GROUP BY f.kind, f.subject, f.value"
)
_LATENCIES: Final = (
    f"SELECT f.kind, f.subject, f.value, {_BUCKET} AS bucket, count(*) FROM ({_VALUED}) f "
    "GROUP BY f.kind, f.subject, f.value, bucket ORDER BY f.kind, f.subject, f.value, bucket"
)


def change_sides(db: sqlite3.Connection, since: float, until: float) -> list[ChangeSide]:
    window = {"since": since, "until": until}
    first, last = db.execute("SELECT min(started_at), max(started_at) FROM call_facts").fetchone()
    if first is None:
        return []
    covered = (min(until, last) - max(since, first)) / max(last - first, 1e-9)
    start = "+started_at" if covered > _SCAN_ABOVE else "started_at"
    counted: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    for kind, subject, value, bucket, calls in db.execute(_LATENCIES.format(start=start), window):
        counted.setdefault((kind, subject, value), []).append((int(bucket), int(calls)))
    return [call_fact_rows.side_of(row, counted) for row in db.execute(_SIDES.format(start=start), window)]
