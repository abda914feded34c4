"""registry.replicas and the PostgreSQL store's change feed and leadership: two "replicas"
(two sets of stores and domain objects, each with its own watch hub) on one database, as two
registry processes would be. PostgreSQL only (a throwaway cluster, tests/postgres_cluster)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from meshwarden.control_scopes import parse_version_target
from meshwarden.registry.approvals import Approvals
from meshwarden.registry.audit import Audit
from meshwarden.registry.authz import Caller
from meshwarden.registry.budgets import Budgets, BudgetSettings
from meshwarden.registry.bundles import Bundles
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.controls import Controls, ControlsChanged
from meshwarden.registry.health_reports import Finding, HealthReports
from meshwarden.registry.model import Capability, InstanceSpec, Upserted
from meshwarden.registry.replicas import Follower
from meshwarden.registry.routes import RouteChanged, Routes
from meshwarden.registry.store import Stores
from meshwarden.registry.store.postgres import PostgresLeadership, open_postgres
from meshwarden.registry.store.postgres.database import Database
from meshwarden.registry.store.records import APPROVED, PENDING, AuditEntry, StoredApproval
from meshwarden.registry.watch_hub import HubEvent
from meshwarden.v1 import budgets_pb2, catalog_pb2, controls_pb2
from tests.postgres_cluster import Cluster, fresh_database
from tests.unit.registry.test_catalog import FakeClock

OPERATOR = Caller(None, 0.0, True, False, "ipv4:127.0.0.1:1", operator_id="operator:sha256:abc", claimed_user="ann")
HASH = "sha256:" + "cd" * 32


@dataclass
class Replica:
    stores: Stores
    published: list[HubEvent]
    catalog: Catalog
    controls: Controls
    routes: Routes
    health: HealthReports
    budgets: Budgets
    approvals: Approvals
    follower: Follower

    def received(self) -> list[HubEvent]:
        """What this replica published to its watchers since the last call."""
        events, self.published[:] = list(self.published), []
        return events


async def _replica(url: str) -> Replica:
    stores = await open_postgres(url, event_log_retention=100)
    clock = FakeClock()
    published: list[HubEvent] = []
    audit = Audit(stores.audit, clock)
    catalog = Catalog(stores.catalog, stores.leases, clock, lease_ttl_s=5.0, publish=published.append)
    controls = Controls(stores.controls, clock, audit, published.append)
    routes = Routes(stores.routes, clock, audit, published.append)
    bundles = Bundles(stores.bundles, clock, audit, published.append)
    for part in (catalog, controls, routes, bundles):
        await part.load()
    assert stores.feed is not None
    health = HealthReports(clock, store=stores.health_reports)
    budgets = Budgets(stores.budgets, clock, audit, BudgetSettings(slice_ttl_s=10.0, sync_every_s=0.5))
    approvals = Approvals(stores.approvals, clock, audit)
    follower = Follower(
        stores.feed,
        clock,
        catalog=catalog,
        controls=controls,
        bundles=bundles,
        routes=routes,
        health=health,
        budgets=budgets,
        approvals=approvals,
    )
    return Replica(stores, published, catalog, controls, routes, health, budgets, approvals, follower)


@pytest.fixture
async def replicas(postgres_cluster: Cluster, postgres_template: str) -> AsyncIterator[tuple[Replica, Replica]]:
    url = fresh_database(postgres_cluster, postgres_template)
    first, second = await _replica(url), await _replica(url)
    yield first, second
    for replica in (first, second):
        await replica.stores.close()


def _spec(agent: str) -> InstanceSpec:
    return InstanceSpec(
        instance_id="",
        agent=agent,
        version="1.0.0",
        peer_address="127.0.0.1:7411",
        capabilities=(Capability(name=f"{agent}.run", schema_hash=HASH),),
    )


async def test_each_replica_publishes_every_catalog_change_once_in_revision_order(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    await a.catalog.register(_spec("alpha"))
    await a.catalog.register(_spec("beta"))
    await b.catalog.register(_spec("gamma"))  # b publishes a's two changes first, then its own
    await a.follower.catch_up()
    await a.catalog.register(_spec("delta"))
    await b.follower.catch_up()
    await b.follower.catch_up()  # nothing new: nothing published twice
    for replica in (a, b):
        events = replica.received()
        assert [e.revision for e in events] == [1, 2, 3, 4]  # type: ignore[union-attr]
        assert [e.instance.agent for e in events if isinstance(e, Upserted)] == ["alpha", "beta", "gamma", "delta"]


async def test_controls_and_routes_changed_through_one_replica_reach_the_other(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    switch, revision = await a.controls.kill(controls_pb2.SCOPE_KIND_AGENT, "billing", "runaway", 0, OPERATOR)
    await a.routes.set("billing.refund", {"2.0.0": 90, "1.0.0": 10}, OPERATOR)
    await b.follower.catch_up()
    controls = [e for e in b.received() if isinstance(e, ControlsChanged)]
    assert [c.controls.revision for c in controls] == [revision]
    assert controls[0].controls.kill_switches == (switch,)
    await a.controls.isolate(parse_version_target("billing@2.0.0"), "bad release", OPERATOR)
    await a.routes.set("billing.refund", {}, OPERATOR)  # cleared
    await b.follower.catch_up()
    events = b.received()
    assert [e.controls.revision for e in events if isinstance(e, ControlsChanged)] == [revision + 1]
    assert [dict(e.route.weights) for e in events if isinstance(e, RouteChanged)] == [{}]
    await b.follower.catch_up()
    assert b.received() == []


async def test_a_notification_wakes_the_other_replica_s_feed(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    assert b.stores.feed is not None
    await b.stores.feed.wait(0.01)  # listening from now on
    waiting = asyncio.create_task(b.stores.feed.wait(60.0))
    await a.catalog.register(_spec("alpha"))
    await asyncio.wait_for(waiting, 30.0)  # long before its own 60 s: woken by the commit's NOTIFY


async def test_one_replica_at_a_time_holds_the_lead_and_the_next_takes_it_when_released(
    postgres_cluster: Cluster, postgres_template: str
) -> None:
    db = await Database.connect(fresh_database(postgres_cluster, postgres_template))
    first, second = PostgresLeadership(db, poll_s=0.1), PostgresLeadership(db, poll_s=0.1)
    try:
        await first.acquire()
        taking = asyncio.create_task(second.acquire())
        await asyncio.sleep(0.5)  # several of its tries
        assert not taking.done(), "two replicas held the lead at once"
        await first.release()  # as when its process dies: the connection closes
        await asyncio.wait_for(taking, 10.0)
    finally:
        await first.release()
        await second.release()
        await db.close()


async def test_a_health_report_made_to_one_replica_counts_on_the_other(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    degraded = Finding(catalog_pb2.HEALTH_STATE_DEGRADED, "3 of 5 calls timed out")
    kept = a.health.report("checkout", "checkout-1", registered=False, findings={"billing-1": degraded})
    await a.health.share(kept)
    assert b.health.health(["billing-1"], lambda _: True)[0].reason == "no reports"
    await b.follower.catch_up()
    (seen,) = b.health.health(["billing-1"], lambda _: True)
    assert (seen.state, seen.reason, seen.reporters) == (catalog_pb2.HEALTH_STATE_DEGRADED, degraded.reason, 1)


async def test_a_budget_set_through_one_replica_wakes_the_other_s_budget_watchers(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    await b.follower.catch_up()
    revision = (await b.budgets.current())[0]
    watching = asyncio.create_task(b.budgets.next_change(revision))
    await a.budgets.set(
        budgets_pb2.BUDGET_SCOPE_TEAM, "finance", budgets_pb2.BUDGET_PERIOD_MONTH, 5_000_000, 0, "", OPERATOR
    )
    await b.follower.catch_up()
    await asyncio.wait_for(watching, 10.0)
    assert (await b.budgets.current())[0] == revision + 1


async def test_an_approval_decided_through_one_replica_wakes_the_other_s_waiters(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    pending = StoredApproval(
        id="ap-1",
        state=PENDING,
        agent="billing",
        spiffe_id="spiffe://mesh.test/agent/billing",
        call_kind="agent",
        capability="payments.refund",
        arguments_sha256="0" * 64,
        requested_at=1.0,
        expires_at=2e9,
    )
    entry = AuditEntry(at=1.0, actor="test", action="approval.request", target="ap-1")
    await a.stores.approvals.insert(pending, entry)
    await b.follower.catch_up()
    waiting = b.approvals.changed
    await b.follower.catch_up()
    assert not waiting.is_set(), "woken without a decision"
    await a.stores.approvals.decide("ap-1", PENDING, APPROVED, 2.0, "ann", "ok", entry)
    await b.follower.catch_up()
    assert waiting.is_set()
