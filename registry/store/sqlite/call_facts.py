"""The `call_facts` table in SQLite: one row per call (registry.call_facts), rewritten with its
session's aggregate in the transaction of every receipt batch that touches it
(registry.store.sqlite.sessions.store_aggregates), read by time window for `meshwarden
changes`. Kept apart from the aggregates so each store can add it on its own."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any, Final

from meshwarden.registry.store.records import CallFact

COLUMNS: Final = (
    "call_id, session_id, started_at, latency_us, ok, cost_micro_usd, capability, call_kind, callee_agent, "
    "version, spender_agent, model, bundle_revision, tool, tool_schema"
)


def put(db: sqlite3.Connection, owner: str, facts: Iterable[CallFact], *, in_session: bool) -> None:
    """Replaces the rows of a session (`owner` its id), or of one call outside any session."""
    if in_session:
        db.execute("DELETE FROM call_facts WHERE session_id = ?", (owner,))
    else:
        db.execute("DELETE FROM call_facts WHERE call_id = ? AND session_id = ''", (owner,))
    db.executemany(
        f"INSERT OR REPLACE INTO call_facts ({COLUMNS}) VALUES ({', '.join('?' * len(COLUMNS.split(', ')))})",
        [_row(f) for f in facts],
    )


def between(db: sqlite3.Connection, since: float, until: float) -> list[CallFact]:
    rows = db.execute(f"SELECT {COLUMNS} FROM call_facts WHERE started_at >= ? AND started_at < ?", (since, until))
    return [_fact(row) for row in rows]


def _row(f: CallFact) -> tuple[object, ...]:
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


def _fact(row: tuple[Any, ...]) -> CallFact:
    return CallFact(
        call_id=row[0],
        session_id=row[1],
        started_at=row[2],
        latency_us=row[3],
        ok=bool(row[4]),
        cost_micro_usd=row[5],
        capability=row[6],
        call_kind=row[7],
        callee_agent=row[8],
        version=row[9],
        spender_agent=row[10],
        model=row[11],
        bundle_revision=row[12],
        tool=row[13],
        tool_schema=row[14],
    )
