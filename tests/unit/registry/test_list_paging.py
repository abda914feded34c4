"""Keyset paging of the lists `kill list`, `isolate list`, `route list`, `budget list` and
`bundle history` read (issue 19): pages in the documented order join up to the whole list, a
cursor the registry did not give and a limit past the bound are refused, and no limit is the
whole list, as before paging. Through the servicers over each store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from meshwarden.budget_scopes import MONTH, TEAM
from meshwarden.control_scopes import parse_version_target
from meshwarden.registry import keyset
from meshwarden.registry.api.budgets import BudgetsApi
from meshwarden.registry.api.bundle_history import BundleHistoryApi
from meshwarden.registry.api.controls import ControlsApi
from meshwarden.registry.api.routes import RoutesApi
from meshwarden.registry.audit import Audit
from meshwarden.registry.authz import Caller
from meshwarden.registry.budgets import Budgets, BudgetSettings
from meshwarden.registry.bundles import Bundles
from meshwarden.registry.control_acks import Acknowledgements
from meshwarden.registry.controls import Controls
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.routes import Routes
from meshwarden.registry.store import AuditEntry, StoredBundle, Stores
from meshwarden.registry.watch_hub import WatchHub
from meshwarden.v1 import budgets_pb2, bundle_history_pb2, controls_pb2, registry_pb2
from tests.unit.sidecar.fakes import FakeClock

OPERATOR = Caller(None, 0.0, True, False, "ipv4:127.0.0.1:1", operator_id="operator:sha256:abc", claimed_user="ann")
Lister = Callable[..., Awaitable[tuple[list[str], str]]]


async def _pages_join_up(listed: Lister, expected: list[str], size: int) -> None:
    """Walks the pages of `size` and checks them against the whole list; then the refusals."""
    everything, after_all = await listed()
    assert everything == expected and not after_all  # no limit: everything, as before paging
    walked, cursor = [], ""
    for _ in range(len(expected)):
        page, cursor = await listed(limit=size, cursor=cursor)
        assert 0 < len(page) <= size
        walked += page
        if not cursor:
            break
    assert walked == expected and len(expected) > size
    for bad in ({"cursor": "nonsense"}, {"cursor": keyset.encode(1, 2, 3, 4)}, {"limit": keyset.MAX_PAGE + 1}):
        with pytest.raises(InvalidInput):
            await listed(**bad)


async def test_kill_switches_page_by_engaged_time_then_id(stores: Stores) -> None:
    clock = FakeClock()
    controls = Controls(stores.controls, clock, Audit(stores.audit, clock), lambda event: None)
    engaged = []
    for agent in ("c", "a", "b", "d", "e"):
        switch, _ = await controls.kill(controls_pb2.SCOPE_KIND_AGENT, agent, "test", 0, OPERATOR)
        engaged.append(switch.id)
        clock.now += 1  # engaged one after another
    api = ControlsApi(controls, Acknowledgements(clock), Audit(stores.audit, clock), clock)

    async def listed(**paging: Any) -> tuple[list[str], str]:
        reply = await api.ListKills(controls_pb2.ListKillsRequest(**paging), None)  # type: ignore[arg-type]
        assert set(reply.time_to_effect) <= {k.id for k in reply.kill_switches}
        return [k.id for k in reply.kill_switches], reply.next_cursor

    current = await controls.current()
    expected = [k.id for k in sorted(current.kill_switches, key=lambda k: (k.created_at, k.id))]
    assert sorted(expected) == sorted(engaged)
    await _pages_join_up(listed, expected, 2)


async def test_isolations_page_by_isolated_time_then_target(stores: Stores) -> None:
    clock = FakeClock()
    controls = Controls(stores.controls, clock, Audit(stores.audit, clock), lambda event: None)
    for target in ("b@1.0.0", "a@2.0.0", "a@1.0.0"):
        await controls.isolate(parse_version_target(target), "bad release", OPERATOR)
    api = ControlsApi(controls, Acknowledgements(clock), Audit(stores.audit, clock), clock)

    async def listed(**paging: Any) -> tuple[list[str], str]:
        reply = await api.ListIsolations(controls_pb2.ListIsolationsRequest(**paging), None)  # type: ignore[arg-type]
        return [f"{i.agent}@{i.version}" for i in reply.isolations], reply.next_cursor

    # Isolated in the same instant (the fake clock stood still): by agent, then version.
    await _pages_join_up(listed, ["a@1.0.0", "a@2.0.0", "b@1.0.0"], 2)


async def test_routes_page_by_capability(stores: Stores) -> None:
    clock = FakeClock()
    routes = Routes(stores.routes, clock, Audit(stores.audit, clock), lambda event: None)
    for capability in ("echo", "billing.refund", "search.find"):
        await routes.set(capability, {"1.0.0": 1})
    api = RoutesApi(routes, WatchHub(4))

    async def listed(**paging: Any) -> tuple[list[str], str]:
        reply = await api.ListRoutes(registry_pb2.ListRoutesRequest(**paging), None)  # type: ignore[arg-type]
        return [r.capability for r in reply.routes], reply.next_cursor

    await _pages_join_up(listed, ["billing.refund", "echo", "search.find"], 1)


async def test_budgets_page_by_id_then_subject(stores: Stores) -> None:
    clock = FakeClock()
    budgets = Budgets(
        stores.budgets, clock, Audit(stores.audit, clock), BudgetSettings(slice_ttl_s=10, sync_every_s=0.5)
    )
    ids = [(await budgets.set(TEAM, team, MONTH, 1_000_000, 0, "", OPERATOR))[0].id for team in ("x", "y", "z")]
    api = BudgetsApi(budgets)

    async def listed(**paging: Any) -> tuple[list[str], str]:
        reply = await api.ListBudgets(budgets_pb2.ListBudgetsRequest(**paging), None)  # type: ignore[arg-type]
        return [s.budget.id for s in reply.budgets], reply.next_cursor

    await _pages_join_up(listed, sorted(ids), 2)


async def test_bundle_history_pages_older_revisions_through_the_store(stores: Stores) -> None:
    clock = FakeClock()
    for revision in range(1, 6):
        bundle = StoredBundle(name="mesh", revision=revision, digest=f"d{revision}", artifact=b"{}", pushed_at=1.0)
        await stores.bundles.add(bundle, AuditEntry(at=1.0, actor="test", action="bundle.push", target="mesh"))
    api = BundleHistoryApi(Bundles(stores.bundles, clock, Audit(stores.audit, clock), lambda event: None))

    async def listed(**paging: Any) -> tuple[list[int], str]:
        reply = await api.ListBundles(bundle_history_pb2.ListBundlesRequest(**paging), None)  # type: ignore[arg-type]
        return [b.revision for b in reply.bundles], reply.next_cursor

    assert await listed() == ([5, 4, 3, 2, 1], "")  # no limit: the newest 100, as before
    first, cursor = await listed(limit=2)
    second, cursor_two = await listed(limit=2, cursor=cursor)
    third, end = await listed(limit=2, cursor=cursor_two)
    assert (first, second, third, end) == ([5, 4], [3, 2], [1], "")
    assert await listed(limit=5) == ([5, 4, 3, 2, 1], "")  # exactly all: no empty page after it
    for bad in ({"cursor": "nonsense"}, {"cursor": keyset.encode("5")}, {"limit": 1001}):
        with pytest.raises(InvalidInput):
            await listed(**bad)
