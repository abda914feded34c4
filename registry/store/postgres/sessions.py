"""Session aggregates in PostgreSQL: the same tables as SQLite's (registry.store.sqlite.sessions):
`session_aggregates` (one row per session), `session_members` (its agents and teams, for
filtering) and `session_cost_shares` (what it adds to each cost table's rows; a call made
outside any session has rows of its own, `in_session` false and its call id in place of a
session id). `store_aggregates` rewrites the rows of the sessions a receipt batch touched,
inside that batch's transaction (registry.store.postgres.receipts), with who each session was
started for and its loop signals (.session_signals) and one fact per call (.call_facts);
every change to the cost shares moves `cost_totals` by its difference
(registry.store.cost_total_deltas), so a cost table reads one row per key. Those rows are
shared by every batch: each updates them in one order (cost_total_deltas.rows_of), so two
batches wait for each other, never deadlock.

Why a lock per session: the two sides of a call reach the registry from two sidecars, maybe
through two replicas at once. Each batch recomputes its sessions from the receipts it can
see; without the lock, two batches committing together would each miss the other's receipts
and the last write would leave the totals short. So a batch takes a transaction-level
advisory lock on each session (and sessionless call) it touches, in one order (no deadlock),
before reading; under READ COMMITTED the next statement then sees what the other committed.
An outcome's report takes the same lock, so its copy into the aggregate is never lost.
The rows are written with INSERT ... ON CONFLICT DO UPDATE.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Collection, Iterable, Sequence
from typing import Any, Final

from meshwarden.registry.call_facts import facts_of
from meshwarden.registry.session_aggregates import aggregate
from meshwarden.registry.session_principal import principal_of
from meshwarden.registry.session_signals import signals_of
from meshwarden.registry.store import call_fact_rows, cost_total_deltas, session_rows
from meshwarden.registry.store.postgres import call_facts, session_signals
from meshwarden.registry.store.postgres.database import Connection, Database
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
from meshwarden.v1 import receipts_pb2

# The first key of the two-key advisory locks (the second is hashtext of the id): a session,
# a call outside any session. The one-key locks (receipt chains, migrations) are another space.
SESSION_LOCK: Final = 7_400_010
SESSIONLESS_CALL_LOCK: Final = 7_400_011
# Sessions filled per transaction when aggregates are computed for receipts stored before them.
_FILL_PAGE: Final = 200

_AGGREGATE_COLUMNS: Final = (*session_rows.AGGREGATE_COLUMNS, "outcome", "activity_at")
_UPSERT: Final = (
    f"INSERT INTO session_aggregates ({', '.join(_AGGREGATE_COLUMNS)}) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(_AGGREGATE_COLUMNS) + 1))}) "
    "ON CONFLICT (session_id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _AGGREGATE_COLUMNS[1:])
)
_SHARE_COLUMNS: Final = (
    "by_key, key, in_session, session_id, calls, failures, cost_micro_usd, input_tokens, output_tokens"
)
_SHARE_VALUES: Final = "by_key, key, in_session, calls, failures, cost_micro_usd, input_tokens, output_tokens"
_ADD_TO_TOTALS: Final = (
    f"INSERT INTO cost_totals (by_key, key, {', '.join(cost_total_deltas.TOTAL_COLUMNS)}) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, 3 + len(cost_total_deltas.TOTAL_COLUMNS)))}) "
    "ON CONFLICT (by_key, key) DO UPDATE SET "
    + ", ".join(f"{c} = cost_totals.{c} + excluded.{c}" for c in cost_total_deltas.TOTAL_COLUMNS)
)
_LISTED_COLUMNS: Final = session_rows.listed_columns(session_signals.PRINCIPAL_COLUMNS)
_LISTED_TABLES: Final = (
    "session_aggregates a LEFT JOIN session_outcomes o ON o.session_id = a.session_id "
    "LEFT JOIN session_principals p ON p.session_id = a.session_id"
)


async def lock_sessions(connection: Connection, session_ids: Iterable[str]) -> None:
    """Takes the advisory lock of each session, in one order every transaction follows."""
    await _lock(connection, SESSION_LOCK, session_ids)


async def _lock(connection: Connection, space: int, ids: Iterable[str]) -> None:
    keys = sorted(set(ids))
    if keys:
        await connection.execute(
            "SELECT count(pg_advisory_xact_lock($1, k)) FROM "
            "(SELECT DISTINCT hashtext(id) AS k FROM unnest($2::text[]) AS id ORDER BY k) AS ordered",
            space,
            keys,
        )


async def store_aggregates(connection: Connection, added: Sequence[receipts_pb2.Receipt]) -> None:
    """Recomputes the rows of the sessions (and sessionless calls) of the `added` receipts from
    every receipt stored for them, inside the caller's transaction."""
    session_ids = sorted({r.session_id for r in added if r.session_id})
    call_ids = sorted({r.call_id for r in added if not r.session_id})
    await _lock(connection, SESSION_LOCK, session_ids)
    await _lock(connection, SESSIONLESS_CALL_LOCK, call_ids)
    in_sessions = await connection.fetch(
        "SELECT session_id, body FROM receipts WHERE session_id = ANY($1::text[]) "
        "ORDER BY session_id, started_at, sidecar_instance_id, seq",
        session_ids,
    )
    outside = (
        await connection.fetch(
            "SELECT call_id, body FROM receipts WHERE session_id = '' AND call_id = ANY($1::text[])", call_ids
        )
        if call_ids
        else []
    )
    ended = {
        r[0]: (str(r[1]), float(r[2]))
        for r in await connection.fetch(
            "SELECT session_id, outcome, reported_at FROM session_outcomes WHERE session_id = ANY($1::text[])",
            session_ids,
        )
    }
    rows = await asyncio.to_thread(_rows_of, in_sessions, outside, ended)
    await _write(connection, session_ids, call_ids, rows, {s: outcome for s, (outcome, _) in ended.items()})


class _Rows:
    def __init__(self) -> None:
        self.aggregates: list[tuple[Any, ...]] = []
        self.members: list[tuple[str, str, str]] = []
        self.shares: list[tuple[Any, ...]] = []
        self.principals: list[tuple[Any, ...]] = []
        self.labels: list[tuple[str, str, str]] = []
        self.signals: list[tuple[Any, ...]] = []
        self.facts: list[tuple[Any, ...]] = []


def _rows_of(in_sessions: Sequence[Any], outside: Sequence[Any], ended: dict[str, tuple[str, float]]) -> _Rows:
    """The rows to write, computed off the event loop (decoding a session's receipts)."""
    rows = _Rows()
    for session_id, bodies in _grouped(in_sessions).items():
        receipts = [receipts_pb2.Receipt.FromString(b) for b in bodies]
        found = aggregate(session_id, receipts)
        outcome, reported_at = ended.get(session_id, ("", 0.0))
        rows.aggregates.append(_aggregate_row(found, outcome, max(found.last_activity_at, reported_at)))
        rows.members += [("agent", a, session_id) for a in found.agents] + [
            ("team", t, session_id) for t in found.teams
        ]
        rows.shares += [_share_row(session_id, share, True) for share in found.cost_shares]
        principal = principal_of(session_id, receipts)
        rows.principals.append(session_signals.principal_row(principal))
        rows.labels += session_signals.label_rows(principal)
        rows.signals.append(session_signals.signals_row(signals_of(session_id, receipts)))
        rows.facts += [call_fact_rows.row_of(f) for f in facts_of(receipts)]
    for call_id, bodies in _grouped(outside).items():
        receipts = [receipts_pb2.Receipt.FromString(b) for b in bodies]
        rows.shares += [_share_row(call_id, share, False) for share in aggregate("", receipts).cost_shares]
        rows.facts += [call_fact_rows.row_of(f) for f in facts_of(receipts)]
    return rows


def _grouped(rows: Sequence[Any]) -> dict[str, list[bytes]]:
    grouped: dict[str, list[bytes]] = {}
    for owner, body in rows:
        grouped.setdefault(str(owner), []).append(bytes(body))
    return grouped


async def _write(
    connection: Connection, session_ids: list[str], call_ids: list[str], rows: _Rows, outcomes: dict[str, str]
) -> None:
    if rows.aggregates:
        await connection.executemany(_UPSERT, rows.aggregates)
    if session_ids:
        await connection.execute("DELETE FROM session_members WHERE session_id = ANY($1::text[])", session_ids)
    if rows.members:
        await connection.executemany(
            "INSERT INTO session_members (role, name, session_id) VALUES ($1, $2, $3)", rows.members
        )
    old = await connection.fetch(
        f"SELECT {_SHARE_VALUES}, session_id FROM session_cost_shares WHERE (in_session AND session_id = ANY($1::text[])) "
        "OR (NOT in_session AND session_id = ANY($2::text[]))",
        session_ids,
        call_ids,
    )
    deltas: cost_total_deltas.Deltas = {}
    for share in old:
        cost_total_deltas.add_shares(deltas, [tuple(share)[:8]], outcomes.get(share[8], "") if share[2] else "", -1)
    for row in rows.shares:  # (by_key, key, in_session, owner, calls, ...)
        cost_total_deltas.add_shares(deltas, [(*row[:3], *row[4:])], outcomes.get(row[3], "") if row[2] else "", 1)
    await connection.executemany(_ADD_TO_TOTALS, cost_total_deltas.rows_of(deltas))
    await connection.execute(
        "DELETE FROM session_cost_shares WHERE (in_session AND session_id = ANY($1::text[])) "
        "OR (NOT in_session AND session_id = ANY($2::text[]))",
        session_ids,
        call_ids,
    )
    if rows.shares:
        await connection.executemany(
            f"INSERT INTO session_cost_shares ({_SHARE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
            "ON CONFLICT (by_key, key, in_session, session_id) DO UPDATE SET calls = excluded.calls, "
            "failures = excluded.failures, cost_micro_usd = excluded.cost_micro_usd, "
            "input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens",
            rows.shares,
        )
    if rows.principals:
        await connection.executemany(session_signals.UPSERT_PRINCIPAL, rows.principals)
    if session_ids:
        await connection.execute(session_signals.DELETE_LABELS, session_ids)
    if rows.labels:
        await connection.executemany(session_signals.INSERT_LABEL, rows.labels)
    if rows.signals:
        await connection.executemany(session_signals.UPSERT_SIGNALS, rows.signals)
    await call_facts.put(connection, session_ids, call_ids, rows.facts)


async def note_outcome(connection: Connection, session_id: str, outcome: str, reported_at: float) -> None:
    """Copies a new outcome into the session's aggregate, and counts its shares' spend as
    succeeded or failed in the cost totals (inside the outcome's transaction, which holds the
    session's lock: lock_sessions)."""
    await connection.execute(
        "UPDATE session_aggregates SET outcome = $2, activity_at = greatest(activity_at, $3) WHERE session_id = $1",
        session_id,
        outcome,
        reported_at,
    )
    shares = [
        tuple(r)
        for r in await connection.fetch(
            f"SELECT {_SHARE_VALUES} FROM session_cost_shares WHERE session_id = $1 AND in_session", session_id
        )
    ]
    deltas: cost_total_deltas.Deltas = {}
    cost_total_deltas.add_shares(deltas, shares, "", -1)
    cost_total_deltas.add_shares(deltas, shares, outcome, 1)
    await connection.executemany(_ADD_TO_TOTALS, cost_total_deltas.rows_of(deltas))


async def fill_missing(db: Database) -> int:
    """Once per database: the aggregates of receipts stored before the aggregates existed (a
    database upgraded in place), a page of sessions per transaction; returns how many
    sessions and sessionless calls it filled. Replicas starting together may both fill: the
    work is the same recomputation a batch does, under the same locks, so they agree."""

    async def filled(connection: Connection) -> bool:
        value = await connection.fetchval("SELECT value FROM meta WHERE key = 'session_aggregates_filled'")
        return value is None or int(value) == 1

    if await db.read(filled):
        return 0
    count = 0
    for sessionless in (False, True):
        after = ""
        while True:
            page = await db.write(functools.partial(_fill_page, after=after, sessionless=sessionless))
            count += len(page)
            if len(page) < _FILL_PAGE:
                break
            after = page[-1]

    async def mark(connection: Connection) -> None:
        await connection.execute("UPDATE meta SET value = 1 WHERE key = 'session_aggregates_filled'")

    await db.write(mark)
    return count


async def _fill_page(connection: Connection, *, after: str, sessionless: bool) -> list[str]:
    """Recomputes the next page of sessions (or sessionless calls) after `after`; returns their ids."""
    if sessionless:
        owners = await connection.fetch(
            "SELECT DISTINCT call_id FROM receipts WHERE session_id = '' AND call_id > $1 ORDER BY call_id LIMIT $2",
            after,
            _FILL_PAGE,
        )
    else:
        owners = await connection.fetch(
            "SELECT DISTINCT session_id FROM receipts WHERE session_id > $1 ORDER BY session_id LIMIT $2",
            after,
            _FILL_PAGE,
        )
    ids = [str(r[0]) for r in owners]
    stand_ins = [
        receipts_pb2.Receipt(session_id="", call_id=i) if sessionless else receipts_pb2.Receipt(session_id=i)
        for i in ids
    ]
    await store_aggregates(connection, stand_ins)
    return ids


class PostgresSessions:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def find(self, query: SessionQuery) -> list[ListedSession]:
        where, params = _where(query)
        order = "ASC" if query.oldest_first else "DESC"
        if query.after is not None:
            params += [query.after[0], query.after[1]]
            n = len(params)
            where.append(f"(a.activity_at, a.session_id) {'>' if query.oldest_first else '<'} (${n - 1}, ${n})")
        params.append(query.limit)
        sql = (
            f"SELECT {_LISTED_COLUMNS} FROM {_LISTED_TABLES} "
            f"WHERE {' AND '.join(where) or 'TRUE'} ORDER BY a.activity_at {order}, a.session_id {order} "
            f"LIMIT ${len(params)}"
        )

        async def work(connection: Connection) -> list[ListedSession]:
            return [session_rows.listed_session(row) for row in await connection.fetch(sql, *params)]

        return await self._db.read(work)

    async def suspects(
        self, limits: SuspectThresholds, now: float, after: tuple[float, str] | None, limit: int, reason: str = ""
    ) -> list[SuspectSession]:
        where = session_signals.suspect_where(reason)
        params = [*session_signals.parameters(limits, now), limit]
        if after is not None:
            params += [after[0], after[1]]
            where += f" AND (a.activity_at, a.session_id) > (${len(params) - 1}, ${len(params)})"
        sql = (
            f"SELECT {_LISTED_COLUMNS}, {session_signals.SIGNAL_COLUMNS} FROM {_LISTED_TABLES} "
            f"JOIN session_signals s ON s.session_id = a.session_id CROSS JOIN {session_signals.THRESHOLDS} "
            f"WHERE {where} ORDER BY a.activity_at, a.session_id LIMIT ${session_signals.PARAMETERS + 1}"
        )

        async def work(connection: Connection) -> list[SuspectSession]:
            return [
                SuspectSession(
                    listed=session_rows.listed_session(row),
                    signals=session_rows.signals_of(str(row[0]), row[session_rows.SIGNALS_AT :]),
                )
                for row in await connection.fetch(sql, *params)
            ]

        return await self._db.read(work)

    async def suspect_counts(self, limits: SuspectThresholds, now: float) -> dict[str, int]:
        async def work(connection: Connection) -> dict[str, int]:
            row = await connection.fetchrow(session_signals.COUNTS, *session_signals.parameters(limits, now))
            return session_signals.counts_of(row)

        return await self._db.read(work)

    async def call_facts(
        self, since: float, until: float, capabilities: Collection[str] | None = None
    ) -> list[CallFact]:
        return await self._db.read(lambda connection: call_facts.between(connection, since, until, capabilities))

    async def change_sides(self, since: float, until: float) -> list[ChangeSide]:
        return await self._db.read(lambda connection: call_facts.change_sides(connection, since, until))

    async def cost_totals(self, by: str) -> list[CostTotal]:
        sql = (
            "SELECT key, calls, failures, cost_micro_usd, input_tokens, output_tokens, sessions, successful_outcomes, "
            "failed_session_cost_micro_usd FROM cost_totals WHERE by_key = $1 AND shares > 0"
        )

        async def work(connection: Connection) -> list[CostTotal]:
            return [
                CostTotal(
                    key=str(row[0]),
                    calls=int(row[1]),
                    failures=int(row[2]),
                    cost_micro_usd=int(row[3]),
                    input_tokens=int(row[4]),
                    output_tokens=int(row[5]),
                    sessions=int(row[6]),
                    successful_outcomes=int(row[7]),
                    failed_session_cost_micro_usd=int(row[8]),
                )
                for row in await connection.fetch(sql, by)
            ]

        return await self._db.read(work)


def _where(query: SessionQuery) -> tuple[list[str], list[object]]:
    where: list[str] = []
    params: list[object] = []

    def param(value: object) -> str:
        params.append(value)
        return f"${len(params)}"

    if query.state == "running":
        where.append("a.outcome = ''")
    elif query.state == "finished":
        where.append("a.outcome != ''")
    elif query.state:
        where.append(f"a.outcome = {param(query.state)}")
    if query.workflow_id:
        where.append(f"a.workflow_id = {param(query.workflow_id)}")
    if query.started_for:
        where.append(f"p.started_for = {param(query.started_for)}")
    for key, value in query.labels:
        where.append(
            f"a.session_id IN (SELECT session_id FROM session_labels WHERE key = {param(key)} "
            f"AND value = {param(value)})"  # the (key, value) index
        )
    for role, name in (("agent", query.agent), ("agent", query.participant), ("team", query.team)):
        if name:
            where.append(
                f"a.session_id IN (SELECT session_id FROM session_members WHERE role = {param(role)} "
                f"AND name = {param(name)})"
            )
    return where, params


def _aggregate_row(found: SessionAggregate, outcome: str, activity_at: float) -> tuple[Any, ...]:
    return (
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
        activity_at,
    )


def _share_row(owner: str, share: CostShare, in_session: bool) -> tuple[Any, ...]:
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
