"""The budget stage and the sidecar's ledger, against the registry's real budgets (in this
process, on a real store): reserve before, settle after, release on failure and cancellation,
one lease for many calls, the refusal, the downgrade hook, and what the receipt records."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from meshwarden.budget_scopes import MODEL, SESSION, TOTAL, WORKFLOW
from meshwarden.errors import AgentFailed, BadPayload, BudgetExhausted
from meshwarden.registry.api.budgets import budget_to_proto, state_to_proto
from meshwarden.registry.audit import Audit
from meshwarden.registry.authz import Caller as RegistryCaller
from meshwarden.registry.budgets import Budgets, BudgetSettings, SliceReport
from meshwarden.registry.errors import RegistryError
from meshwarden.registry.rescue import status_for
from meshwarden.registry.store.sqlite import open_sqlite
from meshwarden.registry.wire import duration
from meshwarden.sidecar.budget_ledger import BudgetLedger
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call, Reply
from meshwarden.sidecar.stages import budget
from meshwarden.usage import Usage
from meshwarden.v1 import budgets_pb2
from tests.unit.sidecar.fakes import FakeClock, call

OPERATOR = RegistryCaller(None, 0.0, True, False, "ipv4:127.0.0.1:1", operator_id="operator:sha256:abc")
ME = "spiffe://meshwarden.local/agent/caller"


class InProcessSlices:
    """The registry's Budgets service without the network: the same decisions, the same messages."""

    def __init__(self, budgets: Budgets) -> None:
        self.budgets, self.leases = budgets, 0

    async def lease(self, request: budgets_pb2.LeaseSliceRequest, timeout: float) -> budgets_pb2.LeaseSliceResponse:
        self.leases += 1
        await asyncio.sleep(0)  # an RPC yields: other calls run meanwhile
        try:
            grant = await self.budgets.lease(
                request.instance_id, ME, request.budget_id, request.subject, request.slice_id,
                request.need_micro_usd, request.want_micro_usd,
            )  # fmt: skip
        except RegistryError as exc:  # as registry.rescue answers it
            code, message = status_for(exc)
            raise grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), message) from exc
        return budgets_pb2.LeaseSliceResponse(
            slice_id=grant.slice_id,
            granted_micro_usd=grant.granted_micro_usd,
            ttl=duration(grant.ttl_s),
            exhausted=grant.exhausted,
            retry_after=duration(grant.retry_after_s),
            state=state_to_proto(grant.state),
        )

    async def sync(self, request: budgets_pb2.SyncSlicesRequest, timeout: float) -> budgets_pb2.SyncSlicesResponse:
        reports = [
            SliceReport(
                slice_id=r.slice_id,
                used_micro_usd=r.used_micro_usd,
                in_flight_micro_usd=r.in_flight_micro_usd,
                keep_micro_usd=r.keep_micro_usd,
                release=r.release,
            )
            for r in request.slices
        ]
        statuses = await self.budgets.sync(request.instance_id, ME, reports)
        return budgets_pb2.SyncSlicesResponse(
            slices=[
                budgets_pb2.SliceStatus(
                    slice_id=s.slice_id, live=s.live, recalled=s.recalled, ttl=duration(s.ttl_s),
                    granted_micro_usd=s.granted_micro_usd,
                )
                for s in statuses
            ]
        )  # fmt: skip


class Callee:
    """The inner handler: answers with the usage it is told, fails, or waits."""

    def __init__(self, cost: int = 0) -> None:
        self.cost, self.calls, self.fail, self.hold = cost, [], False, asyncio.Event()
        self.hold.set()
        self.calls: list[Call] = []

    async def __call__(self, c: Call) -> Reply:
        self.calls.append(c)
        await self.hold.wait()
        if self.fail:
            raise AgentFailed(grpc.StatusCode.INTERNAL, "boom")
        return Reply(b"{}", "callee-1", "callee", "1.0.0", Usage("m", 1, 1, self.cost) if self.cost else None)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Budgets]:
    stores = await open_sqlite(tmp_path, event_log_retention=10)
    clock = FakeClock()
    audit = Audit(stores.audit, clock)
    yield Budgets(stores.budgets, clock, audit, BudgetSettings(slice_ttl_s=10, sync_every_s=0.01))
    await stores.close()


async def ledger_for(registry: Budgets) -> tuple[BudgetLedger, InProcessSlices]:
    client = InProcessSlices(registry)
    ledger = BudgetLedger(FakeClock(), client, "caller-1")
    revision, rows = await registry.current()
    ledger.apply(budgets_pb2.BudgetSet(revision=revision, budgets=[budget_to_proto(b) for b in rows]))
    return ledger, client


async def spent(registry: Budgets) -> dict[str, int]:
    return {s.budget.id + (f"/{s.subject}" if s.subject else ""): s.spent_micro_usd for s in await registry.states()}


async def test_reserve_the_estimate_settle_the_measured_cost_and_record_it(registry: Budgets) -> None:
    wf, _ = await registry.set(WORKFLOW, "wf", TOTAL, 1000, 0, "", OPERATOR)
    per_session, _ = await registry.set(SESSION, "", TOTAL, 1000, 0, "", OPERATOR)
    ledger, _ = await ledger_for(registry)
    stage = budget.layer(ledger, PolicyHolder())(Callee(cost=30))
    c = call(workflow_id="wf", session_id="s-1", cost_estimate_micro_usd=100)
    await stage(c)
    assert (c.record.budget_ids, c.record.budget_reserved_micro_usd, c.record.budget_settled_micro_usd) == (
        (wf.id, per_session.id),
        100,
        30,
    )
    await ledger.sync_once()
    assert await spent(registry) == {wf.id: 30, f"{per_session.id}/s-1": 30}


async def test_calls_without_an_estimate_or_out_of_scope_pass_untouched(registry: Budgets) -> None:
    await registry.set(WORKFLOW, "wf", TOTAL, 10, 0, "", OPERATOR)
    await registry.set(MODEL, "gpt-4o-mini", TOTAL, 10, 0, "", OPERATOR)
    ledger, client = await ledger_for(registry)
    stage = budget.layer(ledger, PolicyHolder())(Callee(cost=500))
    for c in (
        call(workflow_id="wf"),  # no estimate: draws on nothing
        call(workflow_id="other", cost_estimate_micro_usd=100),
        call("gpt-4o-mini", cost_estimate_micro_usd=100),  # an agent call named like a model: not a model call
    ):
        await stage(c)
        assert c.record.budget_ids == ()
    assert client.leases == 0
    with pytest.raises(BudgetExhausted, match="model gpt-4o-mini"):
        await stage(call("gpt-4o-mini", kind="model", cost_estimate_micro_usd=100))


async def test_concurrent_calls_share_one_lease_and_never_exceed_the_limit(registry: Budgets) -> None:
    wf, _ = await registry.set(WORKFLOW, "wf", TOTAL, 1000, 0, "", OPERATOR)
    ledger, client = await ledger_for(registry)
    callee = Callee(cost=100)
    callee.hold.clear()
    stage = budget.layer(ledger, PolicyHolder())(callee)

    async def one() -> bool:
        try:
            await stage(call(workflow_id="wf", cost_estimate_micro_usd=100))
            return True
        except BudgetExhausted:
            return False

    tasks = [asyncio.create_task(one()) for _ in range(25)]
    while len(callee.calls) < 10:
        await asyncio.sleep(0)
    callee.hold.set()
    assert sum(await asyncio.gather(*tasks)) == 10
    assert client.leases <= 3  # one for the first call, one for everyone waiting behind it, one refused
    await ledger.sync_once()
    assert await spent(registry) == {wf.id: 1000}


async def test_failure_and_cancellation_release(registry: Budgets) -> None:
    wf, _ = await registry.set(WORKFLOW, "wf", TOTAL, 100, 0, "", OPERATOR)
    ledger, _ = await ledger_for(registry)
    callee = Callee()
    stage = budget.layer(ledger, PolicyHolder())(callee)
    callee.fail = True
    for _ in range(3):  # each failure gives its reservation back: the budget fits one call only
        with pytest.raises(AgentFailed):
            await stage(call(workflow_id="wf", cost_estimate_micro_usd=100))
    callee.fail, callee.hold = False, asyncio.Event()
    task = asyncio.create_task(stage(call(workflow_id="wf", cost_estimate_micro_usd=100)))
    while not callee.calls[3:]:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [s] = ledger.slices()
    assert (s.reserved, s.used) == (0, 0)


async def test_the_refusal_names_the_budget_and_a_downgrade_runs_instead(registry: Budgets) -> None:
    model, _ = await registry.set(MODEL, "big", TOTAL, 1000, 0, "", OPERATOR)
    ledger, _ = await ledger_for(registry)
    callee = Callee(cost=900)
    stage = budget.layer(ledger, PolicyHolder())(callee)
    await stage(call("big", kind="model", cost_estimate_micro_usd=900))
    short = call("big", kind="model", cost_estimate_micro_usd=900)
    with pytest.raises(BudgetExhausted) as refused:
        await stage(short)
    err = refused.value
    assert short.record.budget_short == model.id  # the receipt names the budget that refused
    assert (err.budget_id, err.scope, err.limit_micro_usd, err.spent_micro_usd) == (model.id, "model big", 1000, 900)
    assert err.remaining_micro_usd == 100 and err.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "meshwarden budget set --model big --per total --limit-usd N" in err.message

    asked: list[int] = []

    def cheaper(c: Call, refusal: BudgetExhausted) -> Call | None:
        asked.append(refusal.remaining_micro_usd)
        return replace(c, capability="small", cost_estimate_micro_usd=50)

    callee.cost = 20
    downgrading = budget.layer(ledger, PolicyHolder(), cheaper)(callee)
    c = call("big", kind="model", cost_estimate_micro_usd=900)
    await downgrading(c)
    assert asked == [100] and callee.calls[-1].capability == "small"
    assert (c.record.budget_downgraded_to, c.record.budget_ids, c.record.budget_settled_micro_usd) == ("small", (), 20)
    assert c.record.budget_short == model.id  # ... and the one that made it run cheaper


async def test_a_budget_lifted_meanwhile_draws_nothing_and_a_bad_session_id_is_named(registry: Budgets) -> None:
    wf, _ = await registry.set(WORKFLOW, "wf", TOTAL, 10, 0, "", OPERATOR)
    await registry.set(SESSION, "", TOTAL, 1000, 0, "", OPERATOR)
    ledger, _ = await ledger_for(registry)  # knows both budgets
    await registry.lift(wf.id, "", OPERATOR)  # the sidecar has not heard yet
    stage = budget.layer(ledger, PolicyHolder())(Callee(cost=500))
    c = call(workflow_id="wf", cost_estimate_micro_usd=100)
    await stage(c)
    assert c.record.budget_ids == ()
    with pytest.raises(BadPayload, match="session id"):
        await stage(call(session_id="s" * 200, cost_estimate_micro_usd=100))
