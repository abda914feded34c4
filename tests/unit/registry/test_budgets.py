"""Budgets in the registry, on a real store with an injected clock: set and lift (audited),
grants out of limit - spent - held, recalls, exhaustion, lapsed slices, late reports, soft
limits, and day and month periods."""

from __future__ import annotations

import asyncio
import datetime

import pytest

from meshwarden.budget_scopes import DAY, MONTH, SESSION, TEAM, TOTAL, WORKFLOW, BudgetError, parse_usd, period_of, usd
from meshwarden.registry.audit import Audit
from meshwarden.registry.authz import Caller
from meshwarden.registry.budgets import Budgets, BudgetSettings, SliceReport
from meshwarden.registry.errors import InvalidInput, UnknownControl
from meshwarden.registry.store import BudgetRows, Stores

OPERATOR = Caller(None, 0.0, True, False, "ipv4:127.0.0.1:1", operator_id="operator:sha256:abc", claimed_user="ann")
A, B = "spiffe://meshwarden.local/agent/a", "spiffe://meshwarden.local/agent/b"
# 2026-12-31 23:59:55 UTC: five seconds before both the day and the month end.
NEW_YEARS_EVE = datetime.datetime(2026, 12, 31, 23, 59, 55, tzinfo=datetime.UTC).timestamp()


class Clock:
    def __init__(self, wall: float = NEW_YEARS_EVE) -> None:
        self.now = wall

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def budgets(stores: Stores, clock: Clock) -> Budgets:
    return Budgets(stores.budgets, clock, Audit(stores.audit, clock), BudgetSettings(slice_ttl_s=10, sync_every_s=0.5))


def report(slice_id: str, used: int, in_flight: int = 0, keep: int = 10**9, release: bool = False) -> SliceReport:
    return SliceReport(
        slice_id=slice_id, used_micro_usd=used, in_flight_micro_usd=in_flight, keep_micro_usd=keep, release=release
    )


async def test_set_changes_in_place_lift_removes_and_both_are_audited(budgets: Budgets, stores: Stores) -> None:
    first, created = await budgets.set(TEAM, "finance", MONTH, 50_000_000, 40_000_000, "q4", OPERATOR)
    again, created_again = await budgets.set(TEAM, "finance", MONTH, 60_000_000, 0, "more", OPERATOR)
    assert created and not created_again and again.id == first.id and again.limit_micro_usd == 60_000_000
    assert (await budgets.current())[0] == 2 and [b.id for b in (await budgets.current())[1]] == [first.id]
    await budgets.lift(first.id, "done", OPERATOR)
    assert await budgets.current() == (3, [])
    actions = [entry.action for entry in await stores.audit.list(0.0, 1000)]
    assert actions == ["budget.set", "budget.set", "budget.lift"]
    with pytest.raises(UnknownControl, match="meshwarden budget list"):
        await budgets.lift(first.id, "", OPERATOR)
    with pytest.raises(InvalidInput, match="--soft-usd must be below the limit"):
        await budgets.set(TEAM, "finance", DAY, 1_000_000, 1_000_000, "", OPERATOR)
    with pytest.raises(InvalidInput, match="--session takes no value"):
        await budgets.set(SESSION, "s-1", DAY, 1_000_000, 0, "", OPERATOR)
    with pytest.raises(InvalidInput, match="--workflow"):
        await budgets.set(WORKFLOW, "bad name!", DAY, 1_000_000, 0, "", OPERATOR)


async def test_grants_come_out_of_what_is_neither_spent_nor_held(budgets: Budgets) -> None:
    budget, _ = await budgets.set(WORKFLOW, "wf", TOTAL, 1000, 0, "", OPERATOR)
    a = await budgets.lease("a-1", A, budget.id, "", "", need=100, want=600)
    assert (a.granted_micro_usd, a.exhausted) == (600, False)
    b = await budgets.lease("b-1", B, budget.id, "", "", need=100, want=600)
    assert b.granted_micro_usd == 400  # only what a's slice does not hold
    # Nothing free: a's slice holds 600 of which nothing is in flight: recalled, b asks again later.
    refused = await budgets.lease("b-1", B, budget.id, "", b.slice_id, need=100, want=100)
    assert refused.slice_id == "" and not refused.exhausted and refused.retry_after_s > 0
    [status] = await budgets.sync("a-1", A, [report(a.slice_id, used=50, in_flight=0, keep=600)])
    assert status.recalled and status.live
    [status] = await budgets.sync("a-1", A, [report(a.slice_id, used=50, keep=50)])  # a returns what it does not use
    assert not status.recalled and status.granted_micro_usd == 50
    grown = await budgets.lease("b-1", B, budget.id, "", b.slice_id, need=100, want=100)
    assert grown.slice_id == b.slice_id and grown.granted_micro_usd == 500
    [state] = await budgets.states()
    assert (state.spent_micro_usd, state.reserved_micro_usd, state.remaining_micro_usd) == (50, 500, 450)


async def test_exhausted_only_when_nothing_held_elsewhere_could_make_room(budgets: Budgets) -> None:
    budget, _ = await budgets.set(WORKFLOW, "wf", TOTAL, 1000, 0, "", OPERATOR)
    a = await budgets.lease("a-1", A, budget.id, "", "", need=800, want=800)
    await budgets.sync("a-1", A, [report(a.slice_id, used=800, keep=800)])
    refused = await budgets.lease("b-1", B, budget.id, "", "", need=300, want=300)
    assert refused.exhausted and refused.state.spent_micro_usd == 800 and refused.state.budget.limit_micro_usd == 1000
    assert (await budgets.lease("b-1", B, budget.id, "", "", need=200, want=300)).granted_micro_usd == 200


async def test_a_slice_lapses_after_its_ttl_and_a_late_report_is_still_charged(budgets: Budgets, clock: Clock) -> None:
    budget, _ = await budgets.set(WORKFLOW, "wf", TOTAL, 1000, 0, "", OPERATOR)
    clock.now = 1_000_000.0  # far from any period end
    a = await budgets.lease("a-1", A, budget.id, "", "", need=1000, want=1000)
    assert (await budgets.lease("b-1", B, budget.id, "", "", need=10, want=10)).slice_id == ""  # all held by a
    clock.now += 10.0  # a stopped reporting (killed -9): its slice holds nothing from now on
    assert (await budgets.lease("b-1", B, budget.id, "", "", need=10, want=10)).granted_micro_usd == 10
    assert [s.id for s in await budgets.reap()] == [a.slice_id]
    [status] = await budgets.sync("a-1", A, [report(a.slice_id, used=300)])  # a's calls settled after all
    assert not status.live
    [state] = await budgets.states()
    assert state.spent_micro_usd == 300
    # Only its holder reports a slice.
    [status] = await budgets.sync("b-1", B, [report(a.slice_id, used=900)])
    assert not status.live and (await budgets.states())[0].spent_micro_usd == 300


async def test_crossing_the_soft_limit_is_counted_once(budgets: Budgets) -> None:
    budget, _ = await budgets.set(TEAM, "finance", TOTAL, 1000, 500, "", OPERATOR)
    a = await budgets.lease("a-1", A, budget.id, "", "", need=1000, want=1000)
    await budgets.sync("a-1", A, [report(a.slice_id, used=400)])
    assert not budgets.soft_crossings
    await budgets.sync("a-1", A, [report(a.slice_id, used=600)])
    await budgets.sync("a-1", A, [report(a.slice_id, used=700)])
    assert budgets.soft_crossings == {(budget.id, "team finance"): 1}
    assert (await budgets.states())[0].soft_crossed


async def test_per_session_budgets_cap_each_session_alone(budgets: Budgets) -> None:
    budget, _ = await budgets.set(SESSION, "", TOTAL, 100, 0, "", OPERATOR)
    one = await budgets.lease("a-1", A, budget.id, "s-1", "", need=100, want=100)
    await budgets.sync("a-1", A, [report(one.slice_id, used=100)])
    assert (await budgets.lease("a-1", A, budget.id, "s-1", one.slice_id, need=1, want=1)).exhausted
    assert (await budgets.lease("a-1", A, budget.id, "s-2", "", need=100, want=100)).granted_micro_usd == 100
    assert {s.subject: s.spent_micro_usd for s in await budgets.states()} == {"s-1": 100, "s-2": 0}
    assert [s.subject for s in await budgets.states("s-2")] == ["s-2"]
    with pytest.raises(InvalidInput, match="session id"):
        await budgets.lease("a-1", A, budget.id, "", "", need=1, want=1)


async def test_daily_and_monthly_budgets_start_afresh_with_their_period(budgets: Budgets, clock: Clock) -> None:
    daily, _ = await budgets.set(WORKFLOW, "wf", DAY, 100, 0, "", OPERATOR)
    monthly, _ = await budgets.set(TEAM, "t", MONTH, 100, 0, "", OPERATOR)
    slices = {}
    for budget in (daily, monthly):
        grant = await budgets.lease("a-1", A, budget.id, "", "", need=100, want=100)
        assert grant.ttl_s == 5.0  # a slice never outlives its period (10 s ttl, 5 s left)
        await budgets.sync("a-1", A, [report(grant.slice_id, used=100)])
        assert (await budgets.lease("a-1", A, budget.id, "", grant.slice_id, need=1, want=1)).exhausted
        slices[budget.id] = grant.slice_id
    clock.now += 65  # 2027-01-01 00:01 UTC: a new day and a new month
    for budget in (daily, monthly):
        [status] = await budgets.sync("a-1", A, [report(slices[budget.id], used=100)])
        assert not status.live  # the old period's slice ends
        assert (await budgets.lease("a-1", A, budget.id, "", "", need=100, want=100)).granted_micro_usd == 100
    keys = {s.budget.id: s.period.key for s in await budgets.states()}
    assert keys == {daily.id: "2027-01-01", monthly.id: "2027-01"}


def test_periods_and_amounts() -> None:
    assert period_of(DAY, NEW_YEARS_EVE).key == "2026-12-31"
    assert period_of(MONTH, NEW_YEARS_EVE).ends_at == NEW_YEARS_EVE + 5
    assert period_of(TOTAL, NEW_YEARS_EVE).ends_at is None
    assert period_of(MONTH, datetime.datetime(2027, 2, 10, tzinfo=datetime.UTC).timestamp()).ends_at == (
        datetime.datetime(2027, 3, 1, tzinfo=datetime.UTC).timestamp()
    )
    assert (parse_usd("$1,250.50", "--limit-usd"), parse_usd("0.000001", "--x")) == (1_250_500_000, 1)
    with pytest.raises(BudgetError, match="--limit-usd"):
        parse_usd("0.0000001", "--limit-usd")
    with pytest.raises(BudgetError, match="--limit-usd"):
        parse_usd("ten", "--limit-usd")
    assert (usd(12_500_000), usd(123), usd(0)) == ("$12.50", "$0.000123", "$0.00")


@pytest.mark.usefixtures("sqlite_only")  # PostgreSQL's transactions may await anything: asyncpg suspends
async def test_work_that_would_suspend_inside_a_transaction_is_refused_and_rolled_back(
    budgets: Budgets, stores: Stores
) -> None:
    async def naps_midway(rows: BudgetRows) -> None:
        await rows.bump_revision()
        await asyncio.sleep(0)  # not a row: SQLite's writer thread cannot wait for the event loop

    before = (await budgets.current())[0]
    with pytest.raises(RuntimeError, match="awaited something other than its rows"):
        await stores.budgets.write(naps_midway)
    assert (await budgets.current())[0] == before
