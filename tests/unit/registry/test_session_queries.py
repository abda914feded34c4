"""SessionQueries over a receipt source and a real store, SQLite and PostgreSQL (outcomes, and
the session aggregates kept from the same receipts): windows, cursors, refusals, NOT_FOUND."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from meshwarden.identity.spiffe_ids import Identity
from meshwarden.receipt_calls import calls_of
from meshwarden.receipt_hash import receipt_hash
from meshwarden.registry import session_views
from meshwarden.registry.authz import Caller
from meshwarden.registry.errors import InvalidInput, PermissionDenied, UnknownSession
from meshwarden.registry.outcomes import Outcomes
from meshwarden.registry.receipts import Receipts as Receipts_
from meshwarden.registry.session_aggregates import aggregate
from meshwarden.registry.session_queries import SessionQueries
from meshwarden.registry.store import Stores
from meshwarden.registry.store.receipt_columns import COLUMNS, columns_of
from meshwarden.registry.store.records import SessionQuery
from meshwarden.registry.store.sqlite import Database, stores_over
from meshwarden.registry.store.sqlite.sessions import SqliteSessions, fill_missing, store_aggregates
from meshwarden.v1 import receipts_pb2
from tests.postgres_cluster import Cluster, fresh_database
from tests.unit.receipt_fixtures import both_sides, stamp
from tests.unit.registry.test_receipts import BILLING, ISSUER, KB, chain
from tests.unit.registry.test_receipts import _ship as ship
from tests.unit.sidecar.fakes import FakeClock

OPERATOR = Caller(identity=None, svid_expires_at=0.0, operator=True, sent_bad_operator_token=False, peer="t")


class Receipts:
    def __init__(self, receipts: list[receipts_pb2.Receipt]) -> None:
        self._all = receipts

    async def for_session(self, session_id: str) -> list[receipts_pb2.Receipt]:
        return [r for r in self._all if r.session_id == session_id]

    async def between(self, since: float, until: float) -> list[receipts_pb2.Receipt]:
        return [r for r in self._all if since <= r.started_at.ToNanoseconds() / 1e9 < until]


def stored_receipts() -> list[receipts_pb2.Receipt]:
    return [
        *both_sides("c1", "frontdesk", "billing", "billing.refund", session="early", at=1000.0, usage=("m", 1, 1, 10)),
        *both_sides("c2", "frontdesk", "billing", "billing.refund", session="late", at=2000.0, usage=("m", 1, 1, 20)),
        # outside any session, and failed: cost tables count it all the same
        *both_sides(
            "c3", "frontdesk", "kb", "kb.search", session="", at=100.0, status="INTERNAL", usage=("m", 2, 3, 7)
        ),
    ]


def insert_rows(connection: sqlite3.Connection, receipts: list[receipts_pb2.Receipt]) -> None:
    """The rows `ship` would write, without a chain (each receipt a chain of its own)."""
    connection.executemany(
        f"INSERT INTO receipts ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
        _rows(receipts),
    )


async def insert_rows_pg(connection: Any, receipts: list[receipts_pb2.Receipt]) -> None:
    await connection.executemany(
        f"INSERT INTO receipts ({', '.join(COLUMNS)}) VALUES ({', '.join(f'${n + 1}' for n in range(len(COLUMNS)))})",
        _rows(receipts),
    )


def _rows(receipts: list[receipts_pb2.Receipt]) -> list[tuple[Any, ...]]:
    return [(f"chain-{i}", *columns_of(r, r.SerializeToString())[1:]) for i, r in enumerate(receipts)]


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[_Store]:
    """The receipts of stored_receipts() written as `ship` writes them, with their session
    aggregates kept, on each store."""
    receipts = stored_receipts()
    if request.param == "sqlite":
        db = Database.open(tmp_path)
        stores = stores_over(db, event_log_retention=10)

        def keep(connection: sqlite3.Connection) -> None:
            insert_rows(connection, receipts)
            store_aggregates(connection, receipts, receipts_pb2.Receipt.FromString)

        await db.write(keep)
        try:
            yield _Store(stores, receipts)
        finally:
            await stores.close()
        return
    from meshwarden.registry.store.postgres import Database as PgDatabase
    from meshwarden.registry.store.postgres import sessions as pg_sessions
    from meshwarden.registry.store.postgres import stores_over as pg_stores_over

    url = fresh_database(request.getfixturevalue("postgres_cluster"), request.getfixturevalue("postgres_template"))
    pg = await PgDatabase.connect(url)
    stores = pg_stores_over(pg, event_log_retention=10)

    async def keep_pg(connection: Any) -> None:
        await insert_rows_pg(connection, receipts)
        await pg_sessions.store_aggregates(connection, receipts)

    await pg.write(keep_pg)
    try:
        yield _Store(stores, receipts)
    finally:
        await stores.close()


class _Store:
    def __init__(self, stores: Stores, receipts: list[receipts_pb2.Receipt]) -> None:
        self.stores, self.receipts = stores, receipts


@pytest.fixture
def queries(store: _Store) -> SessionQueries:
    outcomes = Outcomes(store.stores.outcomes, FakeClock())
    return SessionQueries(Receipts(store.receipts), outcomes, store.stores.sessions, FakeClock())


def agent(name: str) -> Caller:
    identity = Identity(
        spiffe_id=f"spiffe://meshwarden.local/agent/{name}", trust_domain="meshwarden.local", kind="agent", name=name
    )
    return Caller(identity=identity, svid_expires_at=0.0, operator=False, sent_bad_operator_token=False, peer="t")


async def test_windows_select_calls_and_outcomes_are_stored_as_the_calling_agent(queries: SessionQueries) -> None:
    await queries.report_outcome(
        receipts_pb2.ReportOutcomeRequest(session_id="late", outcome="succeeded"), agent("frontdesk")
    )
    recent = receipts_pb2.ListSessionsRequest(since=stamp(1500.0))
    listed = await queries.list_sessions(recent, OPERATOR)
    assert [(s.session_id, s.state) for s in listed.sessions] == [("late", "succeeded")]
    costs = await queries.costs(receipts_pb2.CostsRequest(by="agent", since=stamp(500.0)), OPERATOR)
    assert [(r.key, r.cost_micro_usd, r.successful_outcomes) for r in costs.rows] == [("billing", 30, 1)]
    shown = await queries.get_session(receipts_pb2.GetSessionRequest(session_id="early"), OPERATOR)
    assert (shown.summary.state, len(shown.receipts)) == ("running", 2)


async def test_refusals(queries: SessionQueries) -> None:
    with pytest.raises(PermissionDenied):
        await queries.report_outcome(receipts_pb2.ReportOutcomeRequest(session_id="s", outcome="failed"), OPERATOR)
    with pytest.raises(UnknownSession, match="nope"):
        await queries.get_session(receipts_pb2.GetSessionRequest(session_id="nope"), OPERATOR)
    with pytest.raises(InvalidInput, match="until"):
        await queries.list_sessions(receipts_pb2.ListSessionsRequest(since=stamp(10.0), until=stamp(5.0)), OPERATOR)
    with pytest.raises(InvalidInput, match="by"):
        await queries.costs(receipts_pb2.CostsRequest(by="colour"), OPERATOR)


async def test_an_agent_sees_only_its_own_sessions_and_no_costs(queries: SessionQueries) -> None:
    more = receipts_pb2.ListSessionsRequest()
    assert [s.session_id for s in (await queries.list_sessions(more, agent("billing"))).sessions] == ["late", "early"]
    assert (await queries.list_sessions(more, agent("kb"))).sessions == []
    assert (await queries.get_session(receipts_pb2.GetSessionRequest(session_id="early"), agent("frontdesk"))).receipts
    with pytest.raises(PermissionDenied, match="agent kb took no part in session 'early'"):
        await queries.get_session(receipts_pb2.GetSessionRequest(session_id="early"), agent("kb"))
    with pytest.raises(PermissionDenied, match="costs span every agent"):
        await queries.costs(receipts_pb2.CostsRequest(by="agent"), agent("billing"))


async def test_only_an_agent_whose_sidecar_took_part_reports_the_outcome(queries: SessionQueries) -> None:
    with pytest.raises(PermissionDenied, match="agent kb took no part in session 'early'"):
        await queries.report_outcome(
            receipts_pb2.ReportOutcomeRequest(session_id="early", outcome="failed"), agent("kb")
        )
    await queries.report_outcome(
        receipts_pb2.ReportOutcomeRequest(session_id="early", outcome="succeeded"), agent("billing")
    )


async def test_lists_page_with_a_cursor_oldest_first_and_by_outcome(queries: SessionQueries) -> None:
    first = await queries.list_sessions(receipts_pb2.ListSessionsRequest(order="oldest", limit=1), OPERATOR)
    assert [s.session_id for s in first.sessions] == ["early"] and first.next_cursor
    rest = receipts_pb2.ListSessionsRequest(order="oldest", limit=1, cursor=first.next_cursor)
    second = await queries.list_sessions(rest, OPERATOR)
    assert [s.session_id for s in second.sessions] == ["late"]
    last = await queries.list_sessions(dataclass_copy(rest, cursor=second.next_cursor), OPERATOR)
    assert list(last.sessions) == [] and last.next_cursor == ""
    await queries.report_outcome(
        receipts_pb2.ReportOutcomeRequest(session_id="early", outcome="failed"), agent("billing")
    )
    failed = await queries.list_sessions(receipts_pb2.ListSessionsRequest(state="failed"), OPERATOR)
    assert [(s.session_id, s.calls, s.failures, s.input_tokens) for s in failed.sessions] == [("early", 1, 0, 1)]
    with pytest.raises(InvalidInput, match="cursor"):
        await queries.list_sessions(receipts_pb2.ListSessionsRequest(cursor="garbage"), OPERATOR)


async def test_costs_without_a_window_come_from_the_aggregates(queries: SessionQueries) -> None:
    await queries.report_outcome(
        receipts_pb2.ReportOutcomeRequest(session_id="early", outcome="abandoned"), agent("billing")
    )
    await queries.report_outcome(
        receipts_pb2.ReportOutcomeRequest(session_id="late", outcome="succeeded"), agent("billing")
    )
    for by, key in (("agent", "billing"), ("caller", "frontdesk -> billing"), ("agent-model", "billing x m")):
        row, sessionless = (await queries.costs(receipts_pb2.CostsRequest(by=by), OPERATOR)).rows
        assert (sessionless.cost_micro_usd, sessionless.calls, sessionless.failures) == (7, 1, 1)
        assert (sessionless.sessions, sessionless.input_tokens, sessionless.output_tokens) == (0, 2, 3)
        assert (row.key, row.cost_micro_usd, row.calls, row.sessions) == (key, 30, 2, 2)
        assert (row.successful_outcomes, row.cost_per_successful_outcome_micro_usd) == (1, 30)
        assert row.failed_session_cost_micro_usd == 10
    window = receipts_pb2.CostsRequest(by="agent", since=stamp(500.0), until=stamp(1500.0))
    windowed = await queries.costs(window, OPERATOR)
    assert [(r.key, r.cost_micro_usd, r.failed_session_cost_micro_usd) for r in windowed.rows] == [("billing", 10, 10)]


def dataclass_copy(request: receipts_pb2.ListSessionsRequest, *, cursor: str) -> receipts_pb2.ListSessionsRequest:
    copied = receipts_pb2.ListSessionsRequest()
    copied.CopyFrom(request)
    copied.cursor = cursor
    return copied


async def test_receipts_stored_before_the_aggregates_are_filled_in_once(tmp_path: Path) -> None:
    db = Database.open(tmp_path)
    try:
        await db.write(lambda c: insert_rows(c, stored_receipts()))
        assert await db.write(lambda c: fill_missing(c, receipts_pb2.Receipt.FromString)) == 3
        assert await db.write(lambda c: fill_missing(c, receipts_pb2.Receipt.FromString)) == 0
        sessions = SqliteSessions(db)
        assert [s.aggregate.session_id for s in await sessions.find(SessionQuery())] == ["late", "early"]
        assert sorted((t.key, t.cost_micro_usd) for t in await sessions.cost_totals("agent")) == [
            ("billing", 30),
            ("kb", 7),
        ]
        assert sorted(f.call_id for f in await sessions.call_facts(0.0, 1e10)) == ["c1", "c2", "c3"]
    finally:
        db.close()


async def test_receipts_stored_before_the_aggregates_are_filled_in_once_on_postgresql(
    postgres_cluster: Cluster, postgres_template: str
) -> None:
    from meshwarden.registry.store.postgres import Database as PgDatabase
    from meshwarden.registry.store.postgres.sessions import PostgresSessions
    from meshwarden.registry.store.postgres.sessions import fill_missing as pg_fill_missing

    db = await PgDatabase.connect(fresh_database(postgres_cluster, postgres_template))
    try:
        await db.write(lambda c: insert_rows_pg(c, stored_receipts()))
        assert await pg_fill_missing(db) == 3
        assert await pg_fill_missing(db) == 0
        sessions = PostgresSessions(db)
        assert [s.aggregate.session_id for s in await sessions.find(SessionQuery())] == ["late", "early"]
        assert sorted((t.key, t.cost_micro_usd) for t in await sessions.cost_totals("agent")) == [
            ("billing", 30),
            ("kb", 7),
        ]
        assert sorted(f.call_id for f in await sessions.call_facts(0.0, 1e10)) == ["c1", "c2", "c3"]
    finally:
        await db.close()


def _relinked(receipts: list[receipts_pb2.Receipt]) -> list[receipts_pb2.Receipt]:
    """The receipts hashed again after the first's prev_hash was set, each linked to the last."""
    for n, receipt in enumerate(receipts):
        if n:
            receipt.prev_hash = receipts[n - 1].hash
        receipt.hash = receipt_hash(receipt)
    return receipts


def _relabelled(receipts: list[receipts_pb2.Receipt], prefix: str) -> list[receipts_pb2.Receipt]:
    """The chain with call ids of its own (chain() numbers calls alike in every chain), relinked."""
    prev = ""
    for receipt in receipts:
        receipt.call_id, receipt.prev_hash = f"{prefix}-{receipt.call_id}", prev
        receipt.hash = receipt_hash(receipt)
        prev = receipt.hash
    return receipts


async def test_two_chains_shipped_at_once_into_the_same_sessions_are_all_counted(stores: Stores) -> None:
    """Two sidecars' batches for the same sessions, committed together (through two replicas
    on PostgreSQL): each recomputes the sessions, and neither may miss the other's receipts."""
    receipts = Receipts_(stores.receipts, FakeClock(), trust_bundle_pem=ISSUER.bundle_pem)
    billing = _relabelled(chain(40, instance="billing-1", spiffe_id=BILLING), "b")
    kb = _relabelled(chain(40, instance="kb-1", spiffe_id=KB), "k")
    for start in range(0, 40, 4):
        await asyncio.gather(
            ship(receipts, BILLING, billing[start : start + 4]), ship(receipts, KB, kb[start : start + 4])
        )
    assert stores.sessions is not None
    listed = {s.aggregate.session_id: s.aggregate for s in await stores.sessions.find(SessionQuery())}
    for session_id in ("s0", "s1", "s2"):
        expected = aggregate(session_id, await receipts.for_session(session_id))
        assert listed[session_id].calls == expected.calls == len(await receipts.for_session(session_id))
        assert listed[session_id].cost_micro_usd == expected.cost_micro_usd
    totals = {t.key: t.cost_micro_usd for t in await stores.sessions.cost_totals("agent")}
    assert sum(totals.values()) == sum(r.usage.cost_micro_usd for r in billing + kb)
    # the running cost totals, moved by each batch's difference and by each outcome (some
    # reported before a session's last batch, some after), are what the receipts sum to
    queries = SessionQueries(receipts, Outcomes(stores.outcomes, FakeClock()), stores.sessions, FakeClock())
    for session_id, outcome in (("s0", "succeeded"), ("s1", "failed")):
        await queries._outcomes.report(session_id, outcome, "", reported_by="billing")
    later = _relabelled(chain(8, instance="billing-1", spiffe_id=BILLING, start=41), "late")
    later[0].prev_hash = billing[-1].hash
    await ship(receipts, BILLING, _relinked(later))
    await queries._outcomes.report("s2", "abandoned", "", reported_by="billing")
    for by in session_views.COST_KEYS:
        kept = await queries.costs(receipts_pb2.CostsRequest(by=by), OPERATOR)
        summed = await queries.costs(receipts_pb2.CostsRequest(by=by, since=stamp(0.0)), OPERATOR)
        assert sorted(map(str, kept.rows)) == sorted(map(str, summed.rows)), by
    assert stores.session_signals is not None  # one fact per call, whichever batch came last
    facts = await stores.session_signals.call_facts(0.0, 1e10)
    assert sorted(f.call_id for f in facts) == sorted({r.call_id for r in billing + kb + later})


@pytest.mark.parametrize(
    ("changes", "cause"),
    [
        ({}, "(not refused)"),
        ({"status": "PERMISSION_DENIED", "decision": "deny"}, "policy no-refunds"),
        ({"status": "UNAVAILABLE", "error_kind": "killed", "kill_switch_id": "k-1"}, "kill switch k-1"),
        ({"status": "RESOURCE_EXHAUSTED", "error_kind": "budget_exhausted"}, "budget"),  # an older sidecar's
        ({"status": "RESOURCE_EXHAUSTED", "error_kind": "budget_exhausted", "short": "b-9"}, "budget b-9"),
        # not refused, changed: a budget made it run on a cheaper model
        ({"short": "b-9", "downgraded_to": "gpt-small"}, "downgrade by budget b-9"),
        ({"status": "PERMISSION_DENIED", "error_kind": "approval_denied"}, "approval denied"),
    ],
)
def test_refusals_are_split_by_cause(changes: dict[str, str], cause: str) -> None:
    outbound, inbound = both_sides("c", "frontdesk", "billing", "billing.refund", status=changes.get("status", "OK"))
    outbound.policy_decision = changes.get("decision", "allow")
    outbound.policy_ids.append("no-refunds")
    outbound.error_kind = changes.get("error_kind", "")
    outbound.kill_switch_id = changes.get("kill_switch_id", "")
    outbound.budget_short, outbound.budget_downgraded_to = changes.get("short", ""), changes.get("downgraded_to", "")
    (call,) = calls_of([outbound, inbound])
    assert session_views.refusal_cause(call) == cause
