"""What the console shows, read through the registry's domain objects (the same ones its
servicers use; no SQL here): one method per view, each returning plain values for a template.

Lists page with a cursor the page hands back (`after` for names, `before` for ids and times),
so a mesh with a thousand agents shows fifty at a time. Arithmetic over many receipts (the
live map, sessions) runs in a worker thread: the registry's event loop also renews leases.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from meshwarden.clock import Clock
from meshwarden.receipt_calls import calls_of
from meshwarden.registry import keyset
from meshwarden.registry.approvals import Approvals, StoredApproval
from meshwarden.registry.audit import Audit, AuditEntry
from meshwarden.registry.authz import Caller
from meshwarden.registry.budgets import Budgets, BudgetState
from meshwarden.registry.bundles import Bundles, StoredBundle
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.console.timeline import Step, tree
from meshwarden.registry.console.traffic import NO_FLOW, Edge, Flow, Traffic, traffic
from meshwarden.registry.controls import Controls, ControlsSet, KillEffect
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.health_reports import HealthReports
from meshwarden.registry.receipts import Receipts
from meshwarden.registry.session_queries import SessionQueries
from meshwarden.registry.store.records import SidecarBundleStatus
from meshwarden.registry.task_queue import StoredTask, TaskFilter, TaskQueue
from meshwarden.registry.wire import timestamp
from meshwarden.v1 import catalog_pb2, receipts_pb2

PAGE: Final = 50
# Every open map page polls; they share one reading of the window's receipts this fresh.
TRAFFIC_FRESH_S: Final = 2.0
MAX_EDGES: Final = 100
WINDOWS_S: Final = {"1m": 60.0, "5m": 300.0, "15m": 900.0, "1h": 3600.0}
SESSION_WINDOWS_S: Final = {"1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0, "all": 0.0}
# "all" reads the totals the registry keeps per session (milliseconds at 1,000,000 receipts);
# a window reads that window's receipts (seconds at that size), so it is asked for, not the default.
SESSION_WINDOW_DEFAULT: Final = "all"


@dataclass(frozen=True, slots=True)
class AgentRow:
    name: str
    instances: int
    versions: tuple[str, ...]
    health: str  # healthy | degraded | isolated
    health_reason: str
    enrolled_by: tuple[str, ...]  # who let its instances in (Enrolment.label), each once
    served: Flow
    made: Flow


@dataclass(frozen=True, slots=True)
class MapView:
    agents: tuple[AgentRow, ...]  # this page, by name
    agent_count: int
    instance_count: int
    next_after: str  # "" on the last page
    edges: tuple[Edge, ...]
    edge_count: int
    window_s: float


@dataclass(frozen=True, slots=True)
class SessionsView:
    sessions: tuple[receipts_pb2.SessionSummary, ...]
    next_cursor: str  # "" on the last page


@dataclass(frozen=True, slots=True)
class SessionView:
    summary: receipts_pb2.SessionSummary
    outcome_detail: str
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class CostsView:
    rows: tuple[receipts_pb2.CostRow, ...]
    budgets: tuple[BudgetState, ...]


@dataclass(frozen=True, slots=True)
class BundlesView:
    latest: StoredBundle | None
    statuses: tuple[SidecarBundleStatus, ...]  # this page: those refusing a revision first, then by instance id
    sidecars: int  # every sidecar that reported
    on_latest: int
    refusing: int
    next_after: str  # "" on the last page


@dataclass(frozen=True, slots=True)
class ApprovalsView:
    pending: tuple[StoredApproval, ...]
    recent: tuple[StoredApproval, ...]
    next_after: str  # "" on the last page of the pending queue


@dataclass(frozen=True, slots=True)
class TasksView:
    tasks: tuple[StoredTask, ...]
    next_after: str  # "" on the last page


@dataclass(frozen=True, slots=True)
class AuditView:
    entries: tuple[AuditEntry, ...]
    next_before: int  # 0 on the last page


@dataclass(frozen=True, kw_only=True)
class Sources:
    """The registry's domain objects the console reads and acts through (built in registry.app)."""

    catalog: Catalog
    health: HealthReports
    receipts: Receipts
    sessions: SessionQueries
    budgets: Budgets
    approvals: Approvals
    controls: Controls
    task_queue: TaskQueue
    bundles: Bundles
    audit: Audit
    clock: Clock


class Reads:
    def __init__(self, sources: Sources) -> None:
        self._s = sources
        self._traffic: dict[float, tuple[float, Traffic]] = {}  # by window: when read (monotonic), what

    async def map(self, *, window: str, after: str, agent: str) -> MapView:
        window_s = WINDOWS_S.get(window, WINDOWS_S["5m"])
        listing = await self._s.catalog.list_instances()
        seen = await self._recent_traffic(window_s)
        healths = self._s.health.health([i.instance_id for i in listing.instances], listing.registered.__contains__)
        by_agent: dict[str, list[tuple[str, int, str, str]]] = {}
        for instance, health in zip(listing.instances, healths, strict=True):
            found = (instance.version, health.state, health.reason, instance.enrolment.label)
            by_agent.setdefault(instance.agent, []).append(found)
        names = sorted(by_agent)
        page = [n for n in names if n > after][:PAGE]
        rows = tuple(_agent_row(name, by_agent[name], seen) for name in page)
        edges = tuple(e for e in seen.edges if not agent or agent in (e.caller, e.callee))
        return MapView(
            agents=rows,
            agent_count=len(names),
            instance_count=len(listing.instances),
            next_after=page[-1] if len(page) == PAGE and page[-1] != names[-1] else "",
            edges=edges[:MAX_EDGES],
            edge_count=len(edges),
            window_s=window_s,
        )

    async def _recent_traffic(self, window_s: float) -> Traffic:
        """Who called whom in the last `window_s`, read at most every TRAFFIC_FRESH_S (the map's
        cost grows with the receipts in the window, not with the viewers)."""
        read_at = self._s.clock.monotonic()
        cached = self._traffic.get(window_s)
        if cached is not None and read_at - cached[0] < TRAFFIC_FRESH_S:
            return cached[1]
        now = self._s.clock.wall()
        receipts = await self._s.receipts.between(now - window_s, now + 1.0)
        seen = await asyncio.to_thread(lambda: traffic(calls_of(receipts), window_s))
        self._traffic[window_s] = (read_at, seen)
        return seen

    async def sessions(
        self,
        reader: Caller,
        *,
        state: str,
        agent: str,
        team: str,
        workflow: str,
        window: str,
        order: str = "newest",
        cursor: str = "",
    ) -> SessionsView:
        """A page of the sessions active in the window, newest activity first or (`order`
        "oldest") the longest idle first: stuck work on top. Pages with the store's keyset
        cursor, as `meshwarden sessions list` does, so every session is reachable."""
        request = receipts_pb2.ListSessionsRequest(
            state=state, agent=agent, team=team, workflow_id=workflow, limit=PAGE, order=order, cursor=cursor
        )
        window_s = SESSION_WINDOWS_S.get(window, SESSION_WINDOWS_S[SESSION_WINDOW_DEFAULT])
        if window_s:
            request.since.FromDatetime(timestamp(self._s.clock.wall() - window_s))
        listed = await self._s.sessions.list_sessions(request, reader)
        return SessionsView(sessions=tuple(listed.sessions), next_cursor=listed.next_cursor)

    async def session(self, reader: Caller, session_id: str) -> SessionView:
        found = await self._s.sessions.get_session(receipts_pb2.GetSessionRequest(session_id=session_id), reader)
        steps = await asyncio.to_thread(tree, list(found.receipts))
        return SessionView(summary=found.summary, outcome_detail=found.outcome_detail, steps=tuple(steps))

    async def costs(self, reader: Caller, *, by: str, window: str) -> CostsView:
        request = receipts_pb2.CostsRequest(by=by)
        window_s = SESSION_WINDOWS_S.get(window, SESSION_WINDOWS_S[SESSION_WINDOW_DEFAULT])
        if window_s:
            request.since.FromDatetime(timestamp(self._s.clock.wall() - window_s))
        rows = (await self._s.sessions.costs(request, reader)).rows
        return CostsView(rows=tuple(rows), budgets=tuple(await self._s.budgets.states()))

    async def approvals(self, after: str = "") -> ApprovalsView:
        """A page of the pending queue (oldest first: the next to expire on top), with a cursor
        to the next, and the latest decided."""
        cursor = _keyset(after)
        pending = await self._s.approvals.recent(pending_only=True, limit=PAGE + 1, after=cursor, oldest_first=True)
        more = len(pending) > PAGE
        pending = pending[:PAGE]
        recent = [a for a in await self._s.approvals.recent(pending_only=False, limit=PAGE) if a.state != "pending"]
        return ApprovalsView(
            pending=tuple(pending),
            recent=tuple(recent),
            next_after=keyset.encode(pending[-1].requested_at, pending[-1].id) if more else "",
        )

    async def controls(self) -> ControlsSet:
        return await self._s.controls.current()

    async def kill_effects(self) -> dict[str, KillEffect]:
        """Each switch in force's time to effect, as the servicer that engaged it measured."""
        return await self._s.controls.effects()

    async def tasks(self, states: Sequence[int], after: str = "") -> TasksView:
        """A page of the tasks in `states`, newest first, with a cursor to the next."""
        found = await self._s.task_queue.find(TaskFilter(states=tuple(states), limit=PAGE + 1, after=_keyset(after)))
        more = len(found) > PAGE
        found = found[:PAGE]
        return TasksView(
            tasks=tuple(found), next_after=keyset.encode(found[-1].created_at, found[-1].id) if more else ""
        )

    async def bundles(self, after: str = "") -> BundlesView:
        """What each sidecar runs, fifty a page: those refusing a revision first (what needs a
        person), then by instance id; with counts over all of them."""
        latest = await self._s.bundles.latest()
        statuses = sorted(await self._s.bundles.statuses(), key=_bundle_position)
        kept = [s for s in statuses if not after or _bundle_position(s) > _bundle_cursor(after)][:PAGE]
        more = len(kept) == PAGE and kept[-1] is not statuses[-1]
        return BundlesView(
            latest=latest,
            statuses=tuple(kept),
            sidecars=len(statuses),
            on_latest=sum(1 for s in statuses if latest is not None and s.active_revision == latest.revision),
            refusing=sum(1 for s in statuses if s.refusal),
            next_after=("1~" if kept[-1].refusal else "0~") + kept[-1].instance_id if more else "",
        )

    async def audit(self, before: int) -> AuditView:
        entries = await self._s.audit.page(before, PAGE + 1)
        more = len(entries) > PAGE
        entries = entries[:PAGE]
        return AuditView(entries=tuple(entries), next_before=entries[-1].id if more else 0)


def _bundle_position(status: SidecarBundleStatus) -> tuple[int, str]:
    return (0 if status.refusal else 1, status.instance_id)


def _bundle_cursor(text: str) -> tuple[int, str]:
    """The page's last (refusing, instance id), as `next_after` wrote it: "1~ID" refusing, "0~ID" not."""
    refusing, _, instance_id = text.partition("~")
    return (0 if refusing == "1" else 1, instance_id)


def _agent_row(name: str, instances: list[tuple[str, int, str, str]], seen: Traffic) -> AgentRow:
    worst = max(instances, key=lambda found: found[1])
    state = catalog_pb2.HealthState.Name(worst[1]).removeprefix("HEALTH_STATE_").lower()  # type: ignore[arg-type]
    return AgentRow(
        name=name,
        instances=len(instances),
        versions=tuple(sorted({version for version, _, _, _ in instances})),
        health=state,
        health_reason=worst[2],
        enrolled_by=tuple(sorted({label for _, _, _, label in instances})),
        served=seen.served.get(name, NO_FLOW),
        made=seen.made.get(name, NO_FLOW),
    )


def _keyset(text: str) -> tuple[float, str] | None:
    """A (time, id) cursor a page handed out; a mangled one starts from the first page."""
    if not text:
        return None
    try:
        at, key = keyset.decode(text, float, str)
    except InvalidInput:
        return None
    return float(at), str(key)
