"""Receipts for the operator benchmarks at scale, loaded through the receipt store's ingest
path (`stores.receipts.ship`: the chain continued, the rows written and every touched
session's aggregates, principal, signals and call facts recomputed in the batch's
transaction), not through live calls: the sidecars' signing and the registry's per-receipt
hash check are skipped, which is what makes a million receipts take minutes, not hours.

The shape is benchmarks/session_queries.py's: four agents, sessions of four calls (a tree of
three levels), both sidecars' receipts of each call, usage on the callee's side, a release
halfway (versions 1.0.0 then 1.1.0), each session started for one of 50 users, and an outcome
on two sessions in three (succeeded, failed). The last call of each session is a tool call
(kb.search), so the tool ledger has rows.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from typing import Final

import asyncpg
from session_queries import AGENTS, MODELS, T0  # beside this script: python puts its folder on sys.path

from meshwarden.clock import SystemClock
from meshwarden.receipt_hash import receipt_hash
from meshwarden.receipt_signing import sign_head
from meshwarden.registry.issuer import Issuer
from meshwarden.registry.store import Stores
from meshwarden.registry.store.postgres import migrations as postgres_migrations
from meshwarden.registry.store.records import StoredOutcome
from meshwarden.registry.store.sqlite import migrations as sqlite_migrations
from meshwarden.v1 import receipts_pb2

CALLS_PER_SESSION = 4
RECEIPTS_PER_SESSION = 2 * CALLS_PER_SESSION - 1  # the tool call has the caller's side only
_SESSIONS_PER_BATCH = 120  # 240 receipts per chain and batch at most (the caller sides of 4 calls)
_OUTCOMES_AT_ONCE = 32
SESSION_SPACING_S = 0.04  # between the starts of two sessions


class _Chain:
    def __init__(self, agent: str, issuer: Issuer) -> None:
        self.instance_id, self.spiffe_id = f"{agent}-1", f"spiffe://meshwarden.local/agent/{agent}"
        self.svid = issuer.issue(self.spiffe_id, 3600)
        self.seq, self.head = 0, ""
        self.pending: list[receipts_pb2.Receipt] = []

    def add(self, receipt: receipts_pb2.Receipt) -> None:
        self.seq += 1
        receipt.sidecar_instance_id, receipt.sidecar_spiffe_id = self.instance_id, self.spiffe_id
        receipt.seq, receipt.prev_hash = self.seq, self.head
        receipt.hash = self.head = receipt_hash(receipt)
        self.pending.append(receipt)

    async def ship(self, stores: Stores, at: float) -> None:
        if not self.pending:
            return
        last = self.pending[-1]
        head = sign_head(self.svid, self.instance_id, last.seq, last.hash)
        await stores.receipts.ship(self.spiffe_id, self.instance_id, self.pending, head, at)
        self.pending = []


def _session(n: int, chains: dict[str, _Chain], total: int, first_at: float) -> float:
    """Adds session `n`'s seven receipts to the chains; returns its last call's start."""
    at = first_at + n * SESSION_SPACING_S
    for position in range(CALLS_PER_SESSION):
        call = n * CALLS_PER_SESSION + position
        caller, callee = (
            (AGENTS[0], AGENTS[1]) if position == 0 else (AGENTS[1 + position % 2], AGENTS[1 + (position + 1) % 3])
        )
        tool = position == CALLS_PER_SESSION - 1
        common = {
            "call_id": f"c{call}",
            "parent_call_id": f"c{call - position}" if position else "",
            "session_id": f"s{n}",
            "workflow_id": f"w{n % 20}",
            "caller_agent": caller,
            "caller_spiffe_id": chains[caller].spiffe_id,
            "callee_agent": "" if tool else callee,
            "callee_spiffe_id": "" if tool else chains[callee].spiffe_id,
            "capability": "kb.search" if tool else f"{callee}.work",
            "call_kind": "tool" if tool else "agent",
            "version": "1.0.0" if n < total // 2 else "1.1.0",
            "on_behalf_of": f"user:u{n % 50}",
            "arguments_sha256": f"sha256:{call % 7}",
            "status": "OK",
            "policy_decision": "allow",
            "attempt": 1,
            "latency_us": 2000 + call * 7919 % 20_000,  # spread, as real latencies are
        }
        started = receipts_pb2.Receipt(direction="outbound", **common)  # type: ignore[arg-type]
        started.started_at.FromNanoseconds(int((at + position * 0.01) * 1e9))
        chains[caller].add(started)
        usage = receipts_pb2.Usage(
            model=MODELS[call % 3], input_tokens=500, output_tokens=80, cost_micro_usd=100 + call % 50
        )
        if tool:  # a tool call has one side: the caller's sidecar calls the tool server
            started.usage.CopyFrom(usage)
            continue
        other = receipts_pb2.Receipt(direction="inbound", usage=usage, **common)  # type: ignore[arg-type]
        other.started_at.CopyFrom(started.started_at)
        chains[callee].add(other)
    return at + CALLS_PER_SESSION * 0.01


async def load(
    stores: Stores, sessions: int, first_at: float = T0, progress: Callable[[int, float], None] | None = None
) -> float:
    """Stores `sessions` sessions, the first starting at `first_at`, SESSION_SPACING_S apart;
    returns the wall time just after the last call."""
    issuer = Issuer.ephemeral("meshwarden.local", SystemClock())
    chains = {a: _Chain(a, issuer) for a in AGENTS}
    started, end = time.perf_counter(), first_at
    for first in range(0, sessions, _SESSIONS_PER_BATCH):
        last = min(first + _SESSIONS_PER_BATCH, sessions)
        for n in range(first, last):
            end = _session(n, chains, sessions, first_at)
        for chain in chains.values():  # the callers' sides first, as a call's sidecars ship about together
            await chain.ship(stores, end)
        outcomes = [
            StoredOutcome(
                session_id=f"s{n}",
                outcome="succeeded" if n % 3 == 1 else "failed",
                detail="",
                reported_by=AGENTS[0],
                reported_at=first_at + n * SESSION_SPACING_S + 0.05,
            )
            for n in range(first, last)
            if n % 3
        ]
        for at in range(0, len(outcomes), _OUTCOMES_AT_ONCE):
            await asyncio.gather(*(stores.outcomes.add_first(o) for o in outcomes[at : at + _OUTCOMES_AT_ONCE]))
        if progress is not None:
            progress(last, time.perf_counter() - started)
    return end + 1.0


# The rows a session (or a call outside any) has in each table, and which of their columns
# hold an id a copy renames (a copy's ids end in "~N"; "" stays "").
_COPIED: Final = {
    "receipts": ("sidecar_instance_id", "call_id", "session_id"),
    "session_aggregates": ("session_id",),
    "session_members": ("session_id",),
    "session_cost_shares": ("session_id",),
    "session_outcomes": ("session_id",),
    "session_principals": ("session_id",),
    "session_signals": ("session_id",),
    "call_facts": ("call_id", "session_id"),
}


# The columns holding a time: copy N is moved N spans back, so the copies lie one after the
# other in the past, as a mesh's history would (the bodies keep the original's times).
_SHIFTED: Final = {
    "receipts": ("started_at",),
    "session_aggregates": ("started_at", "last_activity_at", "activity_at"),
    "session_outcomes": ("reported_at",),
    "call_facts": ("started_at",),
}


def _copy_sql(table: str, columns: list[str], series: str, not_a_copy: str, span_s: float) -> str:
    renamed, shifted = _COPIED[table], _SHIFTED.get(table, ())

    def chosen(c: str) -> str:
        if c in renamed:
            return f"CASE WHEN {c} = '' THEN '' ELSE {c} || '~' || g.n END"
        return f"{c} - g.n * {span_s!r}" if c in shifted else c

    return (
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(chosen(c) for c in columns)} "
        f"FROM {table}, {series} WHERE {not_a_copy.format(renamed[0])}"
    )


def copy_sqlite(path: str, copies: int, span_s: float) -> None:
    """Copies every session's rows `copies` times under new ids, copy N `span_s` * N seconds
    earlier, in one transaction (the
    registry's store may be open: WAL lets it read meanwhile). A copy's receipt bodies are the
    original's: only the columns queries read carry the new ids."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        series = f"(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {int(copies)}) SELECT n FROM s) g"
        for table in _COPIED:
            columns = [str(row[1]) for row in db.execute(f"PRAGMA table_info({table})")]
            db.execute(_copy_sql(table, columns, series, "instr({}, '~') = 0", span_s))
        for statement in sqlite_migrations.REBUILD_COST_TOTALS.split(";"):  # the totals of the copies too
            if statement.strip():
                db.execute(statement)
        db.execute("COMMIT")
        db.execute("ANALYZE")
    finally:
        db.close()


async def copy_postgres(url: str, copies: int, span_s: float) -> None:
    """copy_sqlite on PostgreSQL, then VACUUM ANALYZE (the planner's statistics)."""
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            for table in _COPIED:
                rows = await connection.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
                    table,
                )
                series = f"generate_series(1, {int(copies)}) AS g(n)"
                await connection.execute(
                    _copy_sql(table, [str(r[0]) for r in rows], series, "position('~' IN {}) = 0", span_s)
                )
            await connection.execute(postgres_migrations.REBUILD_COST_TOTALS)  # the totals of the copies too
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
