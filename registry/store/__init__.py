"""The registry's storage seam: one interface per aggregate, and `Stores`, the set of them.

The domain modules (registry.catalog, registry.bundles, registry.controls, ...) hold the
rules and call these interfaces; only implementations of them hold SQL. SQLite
(registry.store.sqlite) is the embedded default; PostgreSQL, for several replicas, is the
second implementation of the same interfaces.

What every implementation guarantees:
- Methods are coroutines and never block the caller's event loop (SQLite runs them on
  worker threads, PostgreSQL would await its driver).
- Each method is one transaction. A change that carries a revision (the catalog, the
  controls) gets its revision from the store in the same transaction as the change, so the
  revision on disk always matches the state on disk, with no gaps, whoever wrote it.
- A write that carries an `AuditEntry` commits the entry with the write, or neither.
- Failures of the database itself are StoreError (the servers answer UNAVAILABLE); rule
  violations found inside a transaction (receipt chains) are the domain's own errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from meshwarden.registry.errors import RegistryError
from meshwarden.registry.model import CatalogEvent, Instance, RemovalReason, Removed, Snapshot, Upserted
from meshwarden.registry.store.records import (
    AgentActivity,
    AuditEntry,
    BudgetRow,
    CallFact,
    ChainHead,
    ChainVerdict,
    ChangeSide,
    ControlsSet,
    ControlWatcher,
    CostTotal,
    Isolation,
    JoinTokenRecord,
    KillEffect,
    KillSwitch,
    ListedSession,
    Positions,
    SessionQuery,
    SidecarBundleStatus,
    SliceRow,
    SpendRow,
    StoredApproval,
    StoredBundle,
    StoredHealthReport,
    StoredOutcome,
    StoredRoute,
    SuspectSession,
    SuspectThresholds,
    ToolCallQuery,
)
from meshwarden.registry.store.task_records import StoredTask, TaskChange, TaskFilter, TaskTransition
from meshwarden.v1 import receipts_pb2

T = TypeVar("T")


class CatalogStore(Protocol):
    """Instances and the catalog's event log; every change is the next catalog revision."""

    async def revision(self) -> int:
        """The revision of the last change; 0 when none was ever made."""
        ...

    async def instance(self, instance_id: str) -> Instance | None: ...

    async def snapshot(self) -> Snapshot:
        """Every instance (by agent, then id) with the revision they are at, read together."""
        ...

    async def upsert(self, instance: Instance) -> Upserted:
        """Adds or replaces the instance and logs the event at the next revision."""
        ...

    async def add(self, instance: Instance) -> Upserted | None:
        """Adds an instance under an id not in the catalog, logging the event at the next
        revision; None (nothing written, no revision used) when the id is taken."""
        ...

    async def add_all(self, instances: Sequence[Instance]) -> list[Upserted | None]:
        """`add` for each instance in order, in one transaction (one commit for all): an
        answer per instance, None for each whose id was taken (by the catalog or earlier in
        the list)."""
        ...

    async def remove(self, instance_id: str, reason: RemovalReason) -> Removed | None:
        """Removes the instance and logs the event at the next revision; None (and no
        revision used) when it is not in the catalog."""
        ...

    async def events_after(self, revision: int) -> list[CatalogEvent] | None:
        """Every event after `revision`, oldest first; None when the log no longer holds them
        all (trimmed by retention) or `revision` is ahead of the store."""
        ...


class LeaseStore(Protocol):
    """The leases of catalog instances. Renewals are not catalog changes: no revision, no event."""

    async def set_lease(
        self,
        instance_id: str,
        lease_expires_at: float,
        svid_expires_at: float | None = None,
        *,
        agent: str | None = None,
        live_at: float | None = None,
    ) -> bool:
        """Moves one lease (and the SVID expiry, when given); False (nothing written) when the
        instance is gone, or is not `agent`'s when given, or its lease ended by `live_at` when
        given. One statement: a renewal is one round trip to the store when all is well."""
        ...

    async def extend_all(self, until: float) -> int:
        """Moves every lease that ends before `until` to `until`; returns how many moved."""
        ...

    async def expired(self, now: float) -> list[str]:
        """The ids of instances whose lease ended at or before `now`, earliest first."""
        ...

    async def earliest_expiry(self) -> float | None: ...


class BundleStore(Protocol):
    async def add(self, bundle: StoredBundle, audit: AuditEntry) -> None: ...

    async def latest(self) -> StoredBundle | None: ...

    async def history(self, limit: int, before: int = 0) -> list[StoredBundle]:
        """The newest `limit` revisions (older than revision `before` when not 0), newest first,
        with empty artifacts."""
        ...

    async def revision(self, revision: int) -> StoredBundle | None:
        """One stored revision with its artifact; None when it was never pushed."""
        ...

    async def put_status(self, status: SidecarBundleStatus) -> None:
        """Replaces what this instance last reported."""
        ...

    async def statuses(self) -> list[SidecarBundleStatus]:
        """Every sidecar's last report, by agent then instance id."""
        ...


class RouteStore(Protocol):
    async def put(self, route: StoredRoute, audit: AuditEntry) -> None:
        """Stores the route; a route without weights clears the capability's route."""
        ...

    async def list(self) -> list[StoredRoute]: ...


class ControlStore(Protocol):
    """Kill switches and isolations. Each change bumps the controls revision and returns the
    whole set in force after it, read in the same transaction."""

    async def current(self) -> ControlsSet: ...

    async def add_kill(self, switch: KillSwitch, audit: AuditEntry) -> ControlsSet: ...

    async def remove_kill(self, switch_id: str, audit: AuditEntry) -> ControlsSet | None:
        """None (nothing written) when no such switch is in force. Its time to effect goes too."""
        ...

    async def record_effect(self, effect: KillEffect) -> None:
        """Keeps a switch's time to effect (no control change, no revision); none when it is
        no longer in force."""
        ...

    async def effects(self) -> dict[str, KillEffect]:
        """The time to effect of each switch in force that has one, by switch id."""
        ...

    async def put_isolation(self, isolation: Isolation, audit: AuditEntry) -> ControlsSet: ...

    async def remove_isolation(self, agent: str, version: str, audit: AuditEntry) -> ControlsSet | None:
        """None (nothing written) when that version is not isolated."""
        ...


class AuditStore(Protocol):
    async def append(self, entry: AuditEntry) -> None: ...

    async def before(self, before_id: int, limit: int) -> list[AuditEntry]:
        """At most `limit` entries with an id below `before_id` (0: from the newest), newest
        first: a page of the log, the id of its last entry being the next page's cursor."""
        ...

    async def list(self, since: float, limit: int, before_id: int = 0) -> list[AuditEntry]:
        """The newest `limit` entries at or after `since` (and with an id below `before_id`,
        when given: the keyset cursor of an older page), oldest first."""
        ...


class ReceiptStore(Protocol):
    """Each sidecar's receipt chain as shipped, and the head it last reported."""

    async def ship(
        self,
        shipper_spiffe_id: str,
        chain: str,
        receipts: Sequence[receipts_pb2.Receipt],
        signed_head: receipts_pb2.SignedHead,
        shipped_at: float,
    ) -> int:
        """Appends a checked batch of one chain durably (on disk before it returns), keeping
        `signed_head` (already checked, registry.receipt_signatures) as the chain's signed head
        when it is newer; returns the chain's head seq. The continuity rules
        (registry.receipt_chain) run inside the transaction, against the head and receipts stored."""
        ...

    async def head(self, sidecar_instance_id: str) -> ChainHead | None: ...

    async def heads(self) -> list[ChainHead]: ...

    async def for_session(self, session_id: str) -> list[receipts_pb2.Receipt]:
        """Every receipt of a session, by started_at."""
        ...

    async def between(self, since: float, until: float) -> list[receipts_pb2.Receipt]:
        """Receipts with since <= started_at < until, by started_at."""
        ...

    async def for_task(self, task_id: str, limit: int) -> list[receipts_pb2.Receipt]:
        """The receipts of calls made for the task (its task_id column, indexed), by started_at,
        at most `limit`; only those whose hashed body names the task."""
        ...

    async def count(self) -> int: ...

    async def tool_calls(self, query: ToolCallQuery) -> tuple[list[receipts_pb2.Receipt], bool]:
        """Receipts of MCP tool calls (call_kind "tool") matching `query`, newest first, at
        most `query.limit`; and whether more matched."""
        ...

    async def verify(self, trust_bundle_pem: bytes, sidecar_instance_id: str = "") -> list[ChainVerdict]:
        """A verdict per chain (registry.receipt_verification), only that chain's when given;
        signed heads are checked against the CAs of `trust_bundle_pem`; a chain cut by
        retention is verified from its checkpoint."""
        ...

    async def forget_before(self, cutoff: float, now: float) -> int:
        """Retention: deletes each chain's receipts that started before `cutoff`, up to its
        first receipt that did not (so what stays is a whole chain from there), and records a
        checkpoint (seq and hash of the last one deleted, `now`, and their
        registry.receipt_verification.checkpoint_digest) for verify to start from; returns
        how many receipts it deleted. Session aggregates are kept."""
        ...


class OutcomeStore(Protocol):
    async def add_first(self, outcome: StoredOutcome) -> StoredOutcome | None:
        """Stores the session's outcome unless it has one; returns the one it had (then
        nothing was written), or None."""
        ...

    async def for_sessions(self, session_ids: Iterable[str]) -> Mapping[str, StoredOutcome]: ...


class SessionStore(Protocol):
    """Each session's totals, kept by the receipt store in the transaction of every batch that
    adds receipts to the session (registry.session_aggregates says how they are computed), so
    these answers read one row per session, not every receipt."""

    async def find(self, query: SessionQuery) -> list[ListedSession]:
        """At most `query.limit` sessions matching it (with their outcome joined), by last
        activity (the outcome's report counts) then session id, newest first unless
        `query.oldest_first`, strictly after the `query.after` keyset cursor."""
        ...

    async def cost_totals(self, by: str) -> list[CostTotal]:
        """The cost table over every session, grouped by `by` (registry.session_views.COST_KEYS)."""
        ...


class SessionSignalStore(Protocol):
    """What the receipt store keeps per session beside its aggregate for the operator's
    questions 7 and 10 (registry.session_signals, registry.call_facts): kept apart from
    SessionStore so a store can add it on its own (both stores have it; without it the
    registry computes the same answers from the receipts)."""

    async def suspects(
        self, limits: SuspectThresholds, now: float, after: tuple[float, str] | None, limit: int, reason: str = ""
    ) -> list[SuspectSession]:
        """Running sessions that cross a threshold of `limits` at `now` (that of `reason`
        only, when given), the longest idle first (by last activity, then session id),
        strictly after the `after` keyset cursor."""
        ...

    async def call_facts(
        self, since: float, until: float, capabilities: Collection[str] | None = None
    ) -> list[CallFact]:
        """One row per call that started in [since, until) (registry.call_facts), of the
        `capabilities` only when given."""
        ...

    async def change_sides(self, since: float, until: float) -> list[ChangeSide]:
        """The calls that started in [since, until) summed per kind, subject and value, as
        registry.session_changes.sides_of sums them (latencies by latency_bucket)."""
        ...

    async def suspect_counts(self, limits: SuspectThresholds, now: float) -> dict[str, int]:
        """How many running sessions each reason of registry.session_signals.REASONS flags."""
        ...


class JoinTokenStore(Protocol):
    async def add(self, token: JoinTokenRecord, *, forget_expired_before: float) -> None:
        """Stores the token, deleting tokens that expired before `forget_expired_before`."""
        ...

    async def get(self, token_id: str) -> JoinTokenRecord | None: ...

    async def mark_used(self, token_id: str, at: float) -> bool:
        """Marks an unused token used; False when it was used already (or is unknown)."""
        ...


class ChangeFeed(Protocol):
    """Another replica's changes, for a store shared by several registry processes: where each
    watched aggregate stands, and a wake-up when one moved. A hint only: the follower
    (registry.replicas) always reads the tables, so a missed wake-up delays, never loses."""

    async def positions(self) -> Positions: ...

    async def wait(self, timeout_s: float) -> None:
        """Returns when another replica may have changed something, or after `timeout_s`."""
        ...

    async def close(self) -> None: ...


class Leadership(Protocol):
    """Who among the replicas sharing a store runs the work done once in the mesh
    (registry.singletons); held by one replica at a time, released when it dies."""

    async def acquire(self) -> None:
        """Returns once this replica holds it."""
        ...

    async def lost(self) -> None:
        """Returns when this replica no longer holds it."""
        ...

    async def release(self) -> None: ...


class HealthReportStore(Protocol):
    """Sidecars' health reports, shared between replicas (each report reaches one replica).
    Best effort: a report missed is replaced by its sidecar's next one a few seconds later."""

    async def put(self, report: StoredHealthReport, *, forget_before: float) -> None:
        """Replaces the reporter's last report, forgetting reports older than `forget_before`."""
        ...

    async def after(self, position: int) -> tuple[list[StoredHealthReport], int]:
        """Reports stored after `position` (0: all), and the position to ask from next."""
        ...


class ControlWatcherStore(Protocol):
    """The sidecars watching each replica and what they acknowledged, for "enforced by N/N"
    to count every replica's sidecars (registry.control_acks). Each replica publishes its own
    in-memory list, whole; a replica that stops publishing drops out of the count."""

    async def publish(
        self, replica_id: str, watchers: Sequence[ControlWatcher], now: float, *, forget_before: float
    ) -> None:
        """Replaces `replica_id`'s watchers and marks it seen at `now`; forgets the watchers of
        replicas not seen since `forget_before`."""
        ...

    async def live(self, seen_since: float) -> list[ControlWatcher]:
        """The watchers of every replica seen at or after `seen_since`."""
        ...


class SharedFiles(Protocol):
    """Files every replica must hold alike (the CA, the operator token, the task-signing key),
    kept in a store shared by replicas so that no replica makes its own."""

    async def sync(self, data_dir: Path, names: Sequence[str], make: Callable[[], None]) -> None:
        """Writes the stored files into `data_dir`; when the store holds none yet, runs `make`
        (which loads or creates them in `data_dir`, in a worker thread) and stores them, once
        for all replicas."""


class ApprovalStore(Protocol):
    """Approvals (registry.approvals). Each state change is conditional on the state it
    leaves and commits with its audit entry, so of two deciders (or two calls using one
    approval) one wins and the other is told nothing changed."""

    async def insert(self, approval: StoredApproval, audit: AuditEntry) -> None: ...

    async def get(self, approval_id: str) -> StoredApproval | None: ...

    async def find(self, agent: str, capability: str, arguments_sha256: str, state: str) -> StoredApproval | None:
        """The oldest approval of these exact arguments in `state`."""
        ...

    async def recent(
        self, *, pending_only: bool, limit: int, after: tuple[float, str] | None = None, oldest_first: bool = False
    ) -> list[StoredApproval]:
        """The newest `limit` approvals (pending ones only when asked), newest first (by
        requested_at, then id; the oldest first when asked), strictly after the `after`
        keyset cursor when given."""
        ...

    async def due(self, now: float) -> list[StoredApproval]:
        """Pending or approved approvals whose time ended at or before `now`."""
        ...

    async def decide(
        self, approval_id: str, from_state: str, to_state: str, at: float, by: str, reason: str, audit: AuditEntry
    ) -> bool:
        """Moves one approval from `from_state` to `to_state`; False (nothing written, no audit
        entry) when it was not in `from_state`."""
        ...

    async def use(self, approval_id: str, at: float, call_id: str, audit: AuditEntry) -> bool:
        """Marks an approved approval used by `call_id`; False when it was not approved (any more)."""
        ...


class BudgetRows(Protocol):
    """Typed reads and writes of budgets, their spend per period and their slices, inside one
    transaction of BudgetStore. Coroutines, so that a driver that awaits (PostgreSQL's)
    implements them as they are; SQLite's finish without suspending."""

    async def budgets(self) -> list[BudgetRow]: ...

    async def budget(self, budget_id: str) -> BudgetRow | None: ...

    async def budget_for(self, scope: int, value: str, period: int) -> BudgetRow | None: ...

    async def put_budget(self, budget: BudgetRow) -> None: ...

    async def delete_budget(self, budget_id: str) -> None:
        """Deletes the budget and ends its slices."""
        ...

    async def bump_revision(self) -> None:
        """The budget set's revision moves on (every set and lift)."""
        ...

    async def revision(self) -> int: ...

    async def spend(self, budget_id: str, period_key: str, subject: str) -> SpendRow: ...

    async def spends(self, budget_id: str, period_key: str) -> list[SpendRow]: ...

    async def charge(self, budget_id: str, period_key: str, subject: str, micro_usd: int, now: float) -> None: ...

    async def mark_soft_crossed(self, budget_id: str, period_key: str, subject: str) -> None: ...

    async def slices(self, budget_id: str, period_key: str, subject: str) -> list[SliceRow]:
        """The live slices of one budget, period and subject."""
        ...

    async def live_slices_of(self, budget_id: str, period_key: str) -> list[SliceRow]: ...

    async def slice(self, slice_id: str) -> SliceRow | None: ...

    async def put_slice(self, s: SliceRow) -> None: ...

    async def recall(self, slice_ids: list[str]) -> None: ...

    async def lapsed(self, now: float) -> list[SliceRow]:
        """Live slices whose holder stopped renewing them."""
        ...

    async def end_slices(self, slice_ids: list[str]) -> None: ...

    async def purge_ended(self, before: float) -> int: ...

    async def audit(self, entry: AuditEntry) -> None:
        """Commits `entry` with the transaction."""
        ...


class BudgetStore(Protocol):
    """Budgets as units of work: registry.budgets decides (grant, recall, charge) between
    reads and writes that commit together, so two sidecars asking at once cannot both be
    granted the same room.

    `work` awaits nothing but its rows (no other I/O, no sleeping): an implementation runs it
    inside one transaction without holding the caller's event loop on the database (SQLite:
    to its end on the writer thread, or the reader thread for `read`); raising rolls the
    transaction back."""

    async def write(self, work: Callable[[BudgetRows], Awaitable[T]]) -> T: ...

    async def read(self, work: Callable[[BudgetRows], Awaitable[T]]) -> T:
        """`work` in a read-only transaction (a consistent view); writing raises."""
        ...


class TaskStore(Protocol):
    """Tasks and their timelines. A change runs the domain's pure `TaskChange` on the row it
    read, inside the transaction that writes its result, so a check of the state machine and
    the move it allows commit together or not at all (two holders never both win a lease).
    Which states hold a lease is the domain's (`held` arguments); the store knows no rule."""

    async def add(self, task: StoredTask, submitted: TaskTransition) -> tuple[StoredTask, bool]:
        """Stores a new task and its first move; when its idempotency key is taken, nothing is
        written and the first task with that key comes back with False."""
        ...

    async def add_many(self, tasks: Sequence[tuple[StoredTask, TaskTransition]]) -> list[tuple[StoredTask, bool]]:
        """`add` for each (task, its first move), in one transaction, answers in order."""
        ...

    async def change_many(self, changes: Sequence[tuple[str, TaskChange]]) -> list[StoredTask | RegistryError | None]:
        """`change` for each (task id, change) of different tasks, in one transaction: the
        changed task, None for an unknown id, or the domain error its change raised (that one
        writes nothing; the others are written)."""
        ...

    async def lease_oldest(
        self, state: int, kinds: tuple[str, ...], change: TaskChange, limit: int
    ) -> list[StoredTask]:
        """Applies `change` to each of the `limit` oldest tasks in `state` of one of `kinds`
        (fewer when fewer are there), oldest first; two callers at once never get one task."""
        ...

    async def change(self, task_id: str, change: TaskChange) -> StoredTask | None:
        """Applies `change` to the task; None (nothing written) when no task has that id."""
        ...

    async def lapse(self, held: tuple[int, ...], now: float, change: TaskChange) -> list[StoredTask]:
        """Applies `change` to every task in a `held` state whose lease ended by `now`, earliest first."""
        ...

    async def extend_leases(self, held: tuple[int, ...], now: float) -> int:
        """Gives every lease in a `held` state at least its full TTL from `now`; how many there are."""
        ...

    async def task(self, task_id: str) -> StoredTask | None: ...

    async def timeline(self, task_id: str) -> list[TaskTransition]:
        """Every move of the task, by seq."""
        ...

    async def find(self, where: TaskFilter) -> list[StoredTask]:
        """Tasks matching `where`, newest first, at most `where.limit`."""
        ...

    async def earliest_lease_expiry(self, held: tuple[int, ...]) -> float | None: ...


class AgentActivityStore(Protocol):
    """What each agent has in progress, for `meshwarden agents list` (the operator's question 1),
    counted from indexed tables, never from receipts: a session is running for an agent when no
    outcome was reported for it and the agent made or served one of its calls (the agent is
    one of the session aggregate's members); a task is in progress for an agent when one of
    its instances holds the task's lease (its state is one of `held`)."""

    async def in_progress(self, agents: Sequence[str], held: tuple[int, ...]) -> list[AgentActivity]:
        """One row per agent of `agents` (zeros included), in the order given."""
        ...


@dataclass(frozen=True, kw_only=True)
class Stores:
    """Every aggregate's store over one database, and how to close it."""

    catalog: CatalogStore
    leases: LeaseStore
    bundles: BundleStore
    routes: RouteStore
    controls: ControlStore
    audit: AuditStore
    receipts: ReceiptStore
    outcomes: OutcomeStore
    join_tokens: JoinTokenStore
    tasks: TaskStore
    approvals: ApprovalStore
    budgets: BudgetStore
    agent_activity: AgentActivityStore
    location: str  # where the data lives, for log lines (a path, or a database URL without secrets)
    close: Callable[[], Awaitable[None]]
    # None: this process is the store's only user (SQLite); else other replicas' changes arrive here.
    feed: ChangeFeed | None = None
    leadership: Leadership | None = None
    shared_files: SharedFiles | None = None
    # None: health reports stay in this process's memory (one registry).
    health_reports: HealthReportStore | None = None
    # None: no per-session totals: session and cost queries read receipts.
    sessions: SessionStore | None = None
    session_signals: SessionSignalStore | None = None  # None: answered from the receipts
    # None: every sidecar watches this process (one registry), which counts acknowledgements alone.
    control_watchers: ControlWatcherStore | None = None


__all__ = [
    "AgentActivity",
    "AgentActivityStore",
    "ApprovalStore",
    "AuditEntry",
    "AuditStore",
    "BudgetRow",
    "BudgetRows",
    "BudgetStore",
    "BundleStore",
    "CatalogStore",
    "ChangeFeed",
    "ChainHead",
    "ChainVerdict",
    "ControlStore",
    "ControlWatcher",
    "ControlWatcherStore",
    "ControlsSet",
    "HealthReportStore",
    "Isolation",
    "JoinTokenRecord",
    "JoinTokenStore",
    "KillEffect",
    "KillSwitch",
    "Leadership",
    "LeaseStore",
    "OutcomeStore",
    "Positions",
    "ReceiptStore",
    "RouteStore",
    "SessionSignalStore",
    "SessionStore",
    "SharedFiles",
    "SidecarBundleStatus",
    "SliceRow",
    "SpendRow",
    "StoredApproval",
    "StoredBundle",
    "StoredOutcome",
    "StoredRoute",
    "StoredTask",
    "Stores",
    "TaskChange",
    "TaskFilter",
    "TaskStore",
    "TaskTransition",
]
