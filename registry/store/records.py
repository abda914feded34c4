"""The values that cross the storage seam: what each aggregate's store takes and gives back.

Frozen dataclasses, so a stored value cannot change behind the domain's back, and no
protobuf except receipts (a receipt is stored as the bytes its hash covers). The domain
modules (registry.bundles, registry.controls, ...) re-export the ones their callers use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from meshwarden.control_scopes import describe


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEntry:
    """One operator write (or one the registry made on its own), as `meshwarden audit list` shows it."""

    id: int = 0  # given by the store
    at: float
    actor: str
    claimed_user: str = ""
    action: str
    target: str
    reason: str = ""
    detail: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredBundle:
    name: str
    revision: int
    digest: str
    artifact: bytes
    pushed_at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class SidecarBundleStatus:
    instance_id: str
    agent: str
    active_revision: int
    active_digest: str
    refused_revision: int
    refusal: str
    reported_at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredRoute:
    capability: str
    # Empty: the route was cleared.
    weights: Mapping[str, int] = field(default_factory=dict)
    updated_at: float = 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class KillSwitch:
    id: str
    scope_kind: int  # controls_pb2.ScopeKind
    scope_value: str
    reason: str
    created_by: str
    created_at: float
    expires_at: float | None = None

    @property
    def scope(self) -> str:
        return describe(self.scope_kind, self.scope_value)


@dataclass(frozen=True, kw_only=True, slots=True)
class KillEffect:
    """How an engaged switch reached the sidecars, as the servicer that engaged it measured:
    `enforced` of `expected` live sidecars acknowledged it `took_s` after it was stored."""

    switch_id: str
    enforced: int
    expected: int
    took_s: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Isolation:
    agent: str
    version: str
    reason: str
    created_by: str
    created_at: float

    @property
    def target(self) -> str:
        return f"{self.agent}@{self.version}"


@dataclass(frozen=True, kw_only=True, slots=True)
class ControlsSet:
    """Every control in force, at the controls revision the store gave its last change."""

    revision: int
    kill_switches: tuple[KillSwitch, ...]
    isolations: tuple[Isolation, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredOutcome:
    session_id: str
    outcome: str
    detail: str
    reported_by: str  # the agent whose sidecar reported it (from its SVID)
    reported_at: float


@dataclass(frozen=True, slots=True)
class ReceiptCheckpoint:
    """Where retention cut a chain: the last deleted receipt's seq and hash, when, and a digest
    over them (registry.receipt_verification.checkpoint_digest) that `receipts verify` checks."""

    seq: int
    hash: str
    cut_at: float
    digest: str


@dataclass(frozen=True, slots=True)
class StoredHead:
    """A chain's head as its sidecar last signed it (registry.receipt_signatures)."""

    seq: int
    hash: str
    signer_spiffe_id: str
    signed_head: bytes  # the SignedHead as shipped


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where a sidecar's receipt chain ends, as its sidecar last shipped it."""

    sidecar_instance_id: str
    sidecar_spiffe_id: str
    seq: int
    hash: str
    shipped_at: float


@dataclass(frozen=True, slots=True)
class ChainVerdict:
    sidecar_instance_id: str
    receipts: int
    problems: tuple[str, ...]

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def problem(self) -> str:
        return "; ".join(self.problems)


@dataclass(frozen=True, kw_only=True, slots=True)
class JoinTokenRecord:
    """A join token as stored: the SHA-256 of its secret, never the secret."""

    token_id: str
    secret_sha256: str
    agent: str
    created_at: float
    expires_at: float
    used_at: float | None = None
    # The operator credential that made it (its id, as the audit log names it) and the name its
    # CLI claimed: who enrolls the sidecar that uses it. "" for tokens made before they were kept.
    created_by: str = ""
    created_by_claim: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCallQuery:
    """Which tool calls `meshwarden tools ledger` asks for; "" matches any."""

    since: float
    until: float
    limit: int
    agent: str = ""
    tool: str = ""  # SERVER.TOOL
    server: str = ""
    session_id: str = ""
    decision: str = ""  # "allow" | "deny"
    # The keyset cursor: only calls older than this (started_at, sidecar_instance_id, seq).
    after: tuple[float, str, int] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CostShare:
    """What one session's calls add to one row of a cost table (`by` one of
    registry.session_views.COST_KEYS): kept per session so a store can sum them per key."""

    by: str
    key: str
    calls: int
    failures: int
    cost_micro_usd: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionAggregate:
    """One session's totals over every receipt stored for it, kept up to date by the receipt
    store in the transaction that stores its receipts (registry.session_aggregates computes it)."""

    session_id: str
    workflow_id: str
    started_at: float
    last_activity_at: float  # the last call's end (the store adds the outcome's report time)
    calls: int
    failures: int
    cost_micro_usd: int
    input_tokens: int
    output_tokens: int
    agents: tuple[str, ...]
    teams: tuple[str, ...]
    cost_shares: tuple[CostShare, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionQuery:
    """Which sessions `meshwarden sessions list` asks for; "" matches any."""

    state: str = ""  # "", "running", "finished", or an outcome
    agent: str = ""
    team: str = ""
    workflow_id: str = ""
    participant: str = ""  # set by the registry when an agent asks: only sessions it took part in
    oldest_first: bool = False  # by last activity: the longest idle first (stuck work)
    after: tuple[float, str] | None = None  # the keyset cursor: (last activity, session id)
    limit: int = 100
    started_for: str = ""  # only sessions started for this principal (registry.session_principal)
    labels: tuple[tuple[str, str], ...] = ()  # only sessions started with every one of these labels


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionPrincipal:
    """Who a session was started for and who launched it (registry.session_principal)."""

    session_id: str
    started_for: str = ""
    launched_by: str = ""
    conflict: str = ""  # another principal a receipt of the session named ("" for none)
    labels: tuple[tuple[str, str], ...] = ()  # the free labels it was started with, by key


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionSignals:
    """Signs that a session loops (registry.session_signals)."""

    session_id: str
    max_repeats: int = 0  # calls with the same capability and argument hash, at most
    repeated_capability: str = ""  # the capability of those calls
    retries: int = 0  # attempts after a call's first, and calls repeating one that failed
    successes: int = 0  # calls that ended OK


@dataclass(frozen=True, kw_only=True, slots=True)
class CallFact:
    """One call as `meshwarden changes` compares it (registry.call_facts)."""

    call_id: str
    session_id: str
    started_at: float
    latency_us: int
    ok: bool
    cost_micro_usd: int
    capability: str
    call_kind: str
    callee_agent: str
    version: str
    spender_agent: str
    model: str
    bundle_revision: int
    tool: str  # "server.tool" for tool calls, else ""
    tool_schema: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ChangeSide:
    """The calls of a window that carried one value of a subject, as `meshwarden changes`
    compares them (registry.session_changes): summed where they are stored, so a comparison
    reads one row per value, not one per call."""

    kind: str  # version, model, bundle or tool_schema (registry.session_changes.KINDS)
    subject: str
    value: str
    first_at: float  # the start of the first call that carried it, in the window
    calls: int
    failures: int
    cost_micro_usd: int
    successful_sessions: int  # distinct sessions of these calls that reported "succeeded"
    # (latency rounded to 3 significant digits, calls): registry.session_changes.latency_bucket
    latencies: tuple[tuple[int, int], ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class SuspectThresholds:
    """When a running session is a suspect (registry.session_signals says why each)."""

    repeats: int = 5
    retries_per_success: float = 3.0
    spend_micro_usd: int = 1_000_000  # $1
    spending_within_s: float = 300.0
    idle_s: float = 900.0


@dataclass(frozen=True, kw_only=True, slots=True)
class ListedSession:
    aggregate: SessionAggregate
    outcome: StoredOutcome | None
    principal: SessionPrincipal | None = None  # None: the store keeps no principals (yet)


@dataclass(frozen=True, kw_only=True, slots=True)
class SuspectSession:
    listed: ListedSession
    signals: SessionSignals


@dataclass(frozen=True, kw_only=True, slots=True)
class CostTotal:
    """A cost table's row summed over every session: `failed_session_cost_micro_usd` is the
    spend of the row's sessions whose outcome is failed or abandoned."""

    key: str
    calls: int
    failures: int
    cost_micro_usd: int
    input_tokens: int
    output_tokens: int
    sessions: int
    successful_outcomes: int
    failed_session_cost_micro_usd: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Positions:
    """Where each watched aggregate stands in the store (registry.replicas compares them with
    what this replica last published)."""

    catalog: int  # the catalog revision
    controls: int  # the controls revision
    routes: int  # bumped by every route change
    bundles: int  # the latest bundle revision (0: none)
    budgets: int = 0  # the budget set's revision
    approvals: int = 0  # bumped by every approval decided (or used) through any replica


@dataclass(frozen=True, slots=True)
class ControlWatcher:
    """A sidecar watching the controls on some replica (its instance id and the SPIFFE ID it
    watches with), and the highest controls revision it acknowledged."""

    instance_id: str
    spiffe_id: str
    acknowledged: int


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredHealthReport:
    """One sidecar's last health report, as replicas share it (registry.health_reports)."""

    reporter_agent: str
    reporter_instance_id: str
    reporter_registered: bool
    findings: tuple[tuple[str, int, str], ...]  # (instance id, catalog_pb2.HealthState, reason)
    reported_at: float


# Approval states (registry.approvals holds the rules between them).
PENDING: Final = "pending"
APPROVED: Final = "approved"
DENIED: Final = "denied"
EXPIRED: Final = "expired"
USED: Final = "used"


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredApproval:
    id: str
    state: str
    agent: str
    spiffe_id: str
    call_kind: str
    capability: str
    arguments_sha256: str
    requested_at: float
    expires_at: float
    # Kept as one JSON body (no query reads them): for the reviewer and the audit trail.
    arguments_json: str = ""
    risk_factors: tuple[str, ...] = ()
    policy_ids: tuple[str, ...] = ()
    bundle: str = ""
    session_id: str = ""
    workflow_id: str = ""
    call_id: str = ""
    decided_at: float | None = None
    decided_by: str = ""
    reason: str = ""
    used_at: float | None = None
    used_by_call_id: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class BudgetRow:
    id: str
    scope: int  # budgets_pb2.BudgetScope
    scope_value: str
    period: int  # budgets_pb2.BudgetPeriod
    limit_micro_usd: int
    soft_limit_micro_usd: int
    reason: str
    created_by: str
    created_at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class SliceRow:
    id: str
    budget_id: str
    period_key: str
    subject: str
    holder_instance_id: str
    holder_spiffe_id: str
    granted_micro_usd: int
    used_micro_usd: int
    in_flight_micro_usd: int
    expires_at: float
    recalled: bool
    live: bool

    def held(self, now: float) -> int:
        """What this slice keeps from the budget now: its unspent part while it lives."""
        return max(self.granted_micro_usd - self.used_micro_usd, 0) if self.live and self.expires_at > now else 0


@dataclass(frozen=True, kw_only=True, slots=True)
class SpendRow:
    subject: str
    spent_micro_usd: int
    soft_crossed: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentActivity:
    """What one agent has in progress (registry.store.AgentActivityStore says how it is counted)."""

    agent: str
    sessions_running: int
    tasks_in_progress: int
