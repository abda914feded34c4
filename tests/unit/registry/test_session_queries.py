"""SessionQueries over a receipt source and a real outcomes table: windows, refusals, NOT_FOUND."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meshwarden.identity.spiffe_ids import Identity
from meshwarden.registry.authz import Caller
from meshwarden.registry.errors import InvalidInput, PermissionDenied, UnknownSession
from meshwarden.registry.outcomes import Outcomes
from meshwarden.registry.session_queries import SessionQueries
from meshwarden.registry.store.sqlite import open_sqlite
from meshwarden.v1 import receipts_pb2
from tests.unit.receipt_fixtures import both_sides, stamp
from tests.unit.sidecar.fakes import FakeClock

OPERATOR = Caller(identity=None, svid_expires_at=0.0, operator=True, sent_bad_operator_token=False, peer="t")


class Receipts:
    def __init__(self, receipts: list[receipts_pb2.Receipt]) -> None:
        self._all = receipts

    async def for_session(self, session_id: str) -> list[receipts_pb2.Receipt]:
        return [r for r in self._all if r.session_id == session_id]

    async def between(self, since: float, until: float) -> list[receipts_pb2.Receipt]:
        return [r for r in self._all if since <= r.started_at.ToNanoseconds() / 1e9 < until]


@pytest.fixture
async def queries(tmp_path: Path) -> AsyncIterator[SessionQueries]:
    receipts = [
        *both_sides("c1", "frontdesk", "billing", "billing.refund", session="early", at=1000.0, usage=("m", 1, 1, 10)),
        *both_sides("c2", "frontdesk", "billing", "billing.refund", session="late", at=2000.0, usage=("m", 1, 1, 20)),
    ]
    stores = await open_sqlite(tmp_path, event_log_retention=10)
    try:
        yield SessionQueries(Receipts(receipts), Outcomes(stores.outcomes, FakeClock()), FakeClock())
    finally:
        await stores.close()


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
