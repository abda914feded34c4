"""Session aggregates in SQLite: `session_aggregates` (one row per session), `session_members`
(its agents and teams, for filtering) and `session_cost_shares` (what it adds to each cost
table's rows; a call made outside any session has rows of its own there, `in_session` 0 and
its call id in place of a session id, so cost tables still count every call).
`store_aggregates` rewrites the rows of the sessions a receipt batch touched, inside that
batch's transaction (registry.store.sqlite.receipts), so listing sessions and summing costs
read these small tables instead of every receipt. Who each session was started for and its
loop signals are written beside them (registry.store.sqlite.session_signals), and every change
to the cost shares moves `cost_totals` by its difference (registry.store.cost_total_deltas), so
a cost table reads one row per key."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Iterable
from typing import Final

from meshwarden.registry.call_facts import facts_of
from meshwarden.registry.session_aggregates import aggregate
from meshwarden.registry.session_principal import principal_of
from meshwarden.registry.session_signals import signals_of
from meshwarden.registry.store import cost_total_deltas, session_rows
from meshwarden.registry.store.records import (
    CallFact,
    ChangeSide,
    CostShare,
    CostTotal,
    ListedSession,
    SessionAggregate,
    SessionQuery,
    SuspectSession,
    SuspectThresholds,
)
from meshwarden.registry.store.sqlite import call_facts, session_signals
from meshwarden.registry.store.sqlite.database import Database
from meshwarden.v1 import receipts_pb2

_AGGREGATE_COLUMNS: Final = ", ".join(session_rows.AGGREGATE_COLUMNS)
# `outcome` ("" while running) and `activity_at` (the later of the last call's end and the
# outcome's report) are copied from session_outcomes, here and by the outcome store when an
# outcome arrives, so filtering by state and sorting by activity read an index.
_ACTIVITY: Final = "a.activity_at"
_LISTED_COLUMNS: Final = session_rows.listed_columns(session_signals.PRINCIPAL_COLUMNS)
_LISTED_TABLES: Final = (
    "session_aggregates a LEFT JOIN session_outcomes o ON o.session_id = a.session_id "
    "LEFT JOIN session_principals p ON p.session_id = a.session_id"
)
_SHARE_VALUES: Final = "by_key, key, in_session, calls, failures, cost_micro_usd, input_tokens, output_tokens"
_ADD_TO_TOTALS: Final = (
    f"INSERT INTO cost_totals (by_key, key, {', '.join(cost_total_deltas.TOTAL_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (2 + len(cost_total_deltas.TOTAL_COLUMNS)))}) ON CONFLICT (by_key, key) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in cost_total_deltas.TOTAL_COLUMNS)
)


def store_aggregates(
    db: sqlite3.Connection, added: Iterable[receipts_pb2.Receipt], parse: Callable[[bytes], receipts_pb2.Receipt]
) -> None:
    """Recomputes the rows of the sessions (and sessionless calls) of the `added` receipts from
    every receipt stored for them, inside the caller's transaction."""
    added = list(added)
    for session_id in sorted({r.session_id for r in added if r.session_id}):
        rows = db.execute(
            "SELECT body FROM receipts WHERE session_id = ? ORDER BY started_at, sidecar_instance_id, seq",
            (session_id,),
        )
        receipts = [parse(body) for (body,) in rows]
        _put(db, aggregate(session_id, receipts))
        session_signals.put(db, principal_of(session_id, receipts), signals_of(session_id, receipts))
        call_facts.put(db, session_id, facts_of(receipts), in_session=True)
    for call_id in sorted({r.call_id for r in added if not r.session_id}):
        rows = db.execute("SELECT body FROM receipts WHERE call_id = ? AND session_id = ''", (call_id,))
        receipts = [parse(body) for (body,) in rows]
        _put_shares(db, call_id, aggregate("", receipts).cost_shares, in_session=False)
        call_facts.put(db, call_id, facts_of(receipts), in_session=False)


def fill_missing(db: sqlite3.Connection, parse: Callable[[bytes], receipts_pb2.Receipt]) -> int:
    """Once per database: the aggregates of receipts stored before the aggregates existed
    (a registry upgraded in place); returns how many sessions and sessionless calls it filled."""
    if db.execute("SELECT 1 FROM meta WHERE key = 'session_aggregates_filled'").fetchone() is not None:
        return 0
    owners = db.execute(
        "SELECT session_id, min(rowid) FROM receipts WHERE session_id != '' GROUP BY session_id "
        "UNION ALL SELECT '', min(rowid) FROM receipts WHERE session_id = '' GROUP BY call_id"
    ).fetchall()
    for _, rowid in owners:
        (body,) = db.execute("SELECT body FROM receipts WHERE rowid = ?", (rowid,)).fetchone()
        store_aggregates(db, [parse(body)], parse)
    db.execute("INSERT INTO meta (key, value) VALUES ('session_aggregates_filled', 1)")
    return len(owners)


class SqliteSessions:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def find(self, query: SessionQuery) -> list[ListedSession]:
        where, params = _where(query)
        order = "ASC" if query.oldest_first else "DESC"
        if query.after is not None:
            where.append(f"({_ACTIVITY}, a.session_id) {'>' if query.oldest_first else '<'} (?, ?)")
            params += [query.after[0], query.after[1]]
        sql = (
            f"SELECT {_LISTED_COLUMNS} FROM {_LISTED_TABLES} "
            f"WHERE {' AND '.join(where) or '1'} ORDER BY {_ACTIVITY} {order}, a.session_id {order} LIMIT ?"
        )

        def work(db: sqlite3.Connection) -> list[ListedSession]:
            return [session_rows.listed_session(row) for row in db.execute(sql, (*params, query.limit))]

        return await self._db.read(work)

    async def suspects(
        self, limits: SuspectThresholds, now: float, after: tuple[float, str] | None, limit: int, reason: str = ""
    ) -> list[SuspectSession]:
        where = session_signals.suspect_where(reason)
        params = {**session_signals.parameters(limits, now), "limit": limit}
        if after is not None:
            where += f" AND ({_ACTIVITY}, a.session_id) > (:after_at, :after_id)"
            params.update(after_at=after[0], after_id=after[1])
        sql = (
            f"SELECT {_LISTED_COLUMNS}, {session_signals.SIGNAL_COLUMNS} FROM {_LISTED_TABLES} "
            f"JOIN session_signals s ON s.session_id = a.session_id "
            f"WHERE {where} ORDER BY {_ACTIVITY}, a.session_id LIMIT :limit"
        )

        def work(db: sqlite3.Connection) -> list[SuspectSession]:
            return [
                SuspectSession(
                    listed=session_rows.listed_session(row),
                    signals=session_rows.signals_of(str(row[0]), row[session_rows.SIGNALS_AT :]),
                )
                for row in db.execute(sql, params)
            ]

        return await self._db.read(work)

    async def suspect_counts(self, limits: SuspectThresholds, now: float) -> dict[str, int]:
        return await self._db.read(lambda db: session_signals.counts(db, limits, now))

    async def call_facts(
        self, since: float, until: float, capabilities: Collection[str] | None = None
    ) -> list[CallFact]:
        return await self._db.read(lambda db: call_facts.between(db, since, until, capabilities))

    async def change_sides(self, since: float, until: float) -> list[ChangeSide]:
        return await self._db.read_apart(lambda db: call_facts.change_sides(db, since, until))

    async def cost_totals(self, by: str) -> list[CostTotal]:
        sql = (
            "SELECT key, calls, failures, cost_micro_usd, input_tokens, output_tokens, sessions, successful_outcomes, "
            "failed_session_cost_micro_usd FROM cost_totals WHERE by_key = ? AND shares > 0"
        )

        def work(db: sqlite3.Connection) -> list[CostTotal]:
            return [
                CostTotal(
                    key=row[0],
                    calls=row[1],
                    failures=row[2],
                    cost_micro_usd=row[3],
                    input_tokens=row[4],
                    output_tokens=row[5],
                    sessions=row[6],
                    successful_outcomes=row[7],
                    failed_session_cost_micro_usd=row[8],
                )
                for row in db.execute(sql, (by,))
            ]

        return await self._db.read(work)


def _where(query: SessionQuery) -> tuple[list[str], list[object]]:
    where: list[str] = []
    params: list[object] = []
    if query.state == "running":
        where.append("a.outcome = ''")
    elif query.state == "finished":
        where.append("a.outcome != ''")
    elif query.state:
        where.append("a.outcome = ?")
        params.append(query.state)
    if query.workflow_id:
        where.append("a.workflow_id = ?")
        params.append(query.workflow_id)
    if query.started_for:
        where.append("p.started_for = ?")
        params.append(query.started_for)
    if query.labels:
        where.append(session_signals.label_filter(len(query.labels)))
        params += [part for pair in query.labels for part in pair]
    for role, name in (("agent", query.agent), ("agent", query.participant), ("team", query.team)):
        if name:
            where.append("a.session_id IN (SELECT session_id FROM session_members WHERE role = ? AND name = ?)")
            params += [role, name]
    return where, params


def note_outcome(db: sqlite3.Connection, session_id: str, outcome: str, reported_at: float) -> None:
    """Copies a new outcome into the session's aggregate, and counts its shares' spend as
    succeeded or failed in the cost totals (inside the outcome's transaction)."""
    db.execute(
        "UPDATE session_aggregates SET outcome = ?, activity_at = max(activity_at, ?) WHERE session_id = ?",
        (outcome, reported_at, session_id),
    )
    shares = db.execute(
        f"SELECT {_SHARE_VALUES} FROM session_cost_shares WHERE session_id = ? AND in_session", (session_id,)
    ).fetchall()
    deltas: cost_total_deltas.Deltas = {}
    cost_total_deltas.add_shares(deltas, shares, "", -1)
    cost_total_deltas.add_shares(deltas, shares, outcome, 1)
    db.executemany(_ADD_TO_TOTALS, cost_total_deltas.rows_of(deltas))


def _put(db: sqlite3.Connection, found: SessionAggregate) -> None:
    ended = db.execute(
        "SELECT outcome, reported_at FROM session_outcomes WHERE session_id = ?", (found.session_id,)
    ).fetchone()
    outcome, reported_at = ended if ended is not None else ("", 0.0)
    db.execute(
        f"INSERT OR REPLACE INTO session_aggregates ({_AGGREGATE_COLUMNS}, outcome, activity_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            found.session_id,
            found.workflow_id,
            found.started_at,
            found.last_activity_at,
            found.calls,
            found.failures,
            found.cost_micro_usd,
            found.input_tokens,
            found.output_tokens,
            json.dumps(found.agents),
            json.dumps(found.teams),
            outcome,
            max(found.last_activity_at, reported_at),
        ),
    )
    db.execute("DELETE FROM session_members WHERE session_id = ?", (found.session_id,))
    db.executemany(
        "INSERT INTO session_members (role, name, session_id) VALUES (?, ?, ?)",
        [("agent", a, found.session_id) for a in found.agents] + [("team", t, found.session_id) for t in found.teams],
    )
    _put_shares(db, found.session_id, found.cost_shares, in_session=True, outcome=outcome)


def _put_shares(
    db: sqlite3.Connection, owner: str, shares: Iterable[CostShare], *, in_session: bool, outcome: str = ""
) -> None:
    """Replaces the owner's shares, moving the cost totals by the difference."""
    rows = [_share_row(owner, share, in_session) for share in shares]
    old = db.execute(
        f"SELECT {_SHARE_VALUES} FROM session_cost_shares WHERE session_id = ? AND in_session = ?", (owner, in_session)
    ).fetchall()
    deltas: cost_total_deltas.Deltas = {}
    cost_total_deltas.add_shares(deltas, old, outcome, -1)
    cost_total_deltas.add_shares(deltas, [(r[0], r[1], r[2], *r[4:]) for r in rows], outcome, 1)
    db.executemany(_ADD_TO_TOTALS, cost_total_deltas.rows_of(deltas))
    db.execute("DELETE FROM session_cost_shares WHERE session_id = ? AND in_session = ?", (owner, in_session))
    db.executemany(
        "INSERT INTO session_cost_shares (by_key, key, in_session, session_id, calls, failures, cost_micro_usd, "
        "input_tokens, output_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def _share_row(owner: str, share: CostShare, in_session: bool) -> tuple[object, ...]:
    return (
        share.by,
        share.key,
        in_session,
        owner,
        share.calls,
        share.failures,
        share.cost_micro_usd,
        share.input_tokens,
        share.output_tokens,
    )
