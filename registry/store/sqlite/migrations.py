"""The SQLite schema as ordered, named steps; `PRAGMA user_version` records how many ran.

A database at version N has run steps 1..N; opening it runs the steps after N in one
transaction with the new version, so a failed upgrade leaves it as it was. A database whose
version is beyond the steps this code knows (written by a newer meshwarden) is refused:
this code cannot know what the newer steps changed. Add a step at the END of the list, never
edit one that shipped: databases in the field have run it.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from meshwarden.registry.errors import StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    sql: str


# cost_totals from the shares, whole: the step that adds it, and a benchmark that copied shares by SQL.
REBUILD_COST_TOTALS: Final = """
DELETE FROM cost_totals;
INSERT INTO cost_totals (by_key, key, shares, calls, failures, cost_micro_usd, input_tokens, output_tokens, sessions,
    successful_outcomes, failed_session_cost_micro_usd)
SELECT c.by_key, c.key, count(*), sum(c.calls), sum(c.failures), sum(c.cost_micro_usd), sum(c.input_tokens),
    sum(c.output_tokens), sum(c.in_session), coalesce(sum(o.outcome = 'succeeded'), 0),
    coalesce(sum(CASE WHEN o.outcome IN ('failed', 'abandoned') THEN c.cost_micro_usd ELSE 0 END), 0)
FROM session_cost_shares c LEFT JOIN session_outcomes o ON o.session_id = c.session_id AND c.in_session
GROUP BY c.by_key, c.key;
"""

STEPS: Final[tuple[Step, ...]] = (
    Step(
        "catalog: instances with their leases, the event log, the catalog revision",
        """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    lease_expires_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_by_lease ON instances (lease_expires_at);
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY,
    instance_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('upserted', 'removed')),
    body TEXT,
    reason TEXT
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0);
""",
    ),
    Step(
        "identity: the SVID expiry of each instance, and join tokens",
        """
ALTER TABLE instances ADD COLUMN svid_expires_at REAL NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS join_tokens (
    token_id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    agent TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL
);
""",
    ),
    Step(
        "policy bundles: every pushed revision, and what each sidecar enforces",
        """
CREATE TABLE IF NOT EXISTS policy_bundles (
    revision INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    artifact BLOB NOT NULL,
    pushed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS bundle_status (
    instance_id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    active_revision INTEGER NOT NULL,
    active_digest TEXT NOT NULL,
    refused_revision INTEGER NOT NULL,
    refusal TEXT NOT NULL,
    reported_at REAL NOT NULL
);
""",
    ),
    Step(
        "routes: weighted version routes by capability",
        """
CREATE TABLE IF NOT EXISTS routes (
    capability TEXT PRIMARY KEY,
    weights TEXT NOT NULL,
    updated_at REAL NOT NULL
);
""",
    ),
    Step(
        "receipts: each sidecar's chain as shipped, and the head it last reported",
        """
CREATE TABLE IF NOT EXISTS receipt_chains (
    sidecar_instance_id TEXT PRIMARY KEY,
    sidecar_spiffe_id TEXT NOT NULL,
    head_seq INTEGER NOT NULL,
    head_hash TEXT NOT NULL,
    shipped_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS receipts (
    sidecar_instance_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    direction TEXT NOT NULL,
    call_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    caller_agent TEXT NOT NULL,
    caller_team TEXT NOT NULL,
    callee_agent TEXT NOT NULL,
    callee_team TEXT NOT NULL,
    capability TEXT NOT NULL,
    status TEXT NOT NULL,
    model TEXT NOT NULL,
    cost_micro_usd INTEGER NOT NULL,
    started_at REAL NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (sidecar_instance_id, seq)
);
CREATE INDEX IF NOT EXISTS receipts_by_session ON receipts (session_id, started_at);
CREATE INDEX IF NOT EXISTS receipts_by_start ON receipts (started_at);
""",
    ),
    Step(
        "session outcomes: how each session ended, as its agents reported it (the first report stands)",
        """
CREATE TABLE IF NOT EXISTS session_outcomes (
    session_id TEXT PRIMARY KEY,
    outcome TEXT NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'abandoned')),
    detail TEXT NOT NULL,
    reported_by TEXT NOT NULL,
    reported_at REAL NOT NULL
);
""",
    ),
    Step(
        "operator controls: kill switches, isolations, the controls revision, the audit log",
        """
CREATE TABLE IF NOT EXISTS kill_switches (
    id TEXT PRIMARY KEY,
    scope_kind TEXT NOT NULL,
    scope_value TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL
);
CREATE TABLE IF NOT EXISTS isolations (
    agent TEXT NOT NULL,
    version TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (agent, version)
);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    claimed_user TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_by_time ON audit_log (at);
INSERT OR IGNORE INTO meta (key, value) VALUES ('controls_revision', 0);
""",
    ),
    Step(
        "approvals: a person's decision on one call's exact arguments",
        """
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'used')),
    agent TEXT NOT NULL,
    spiffe_id TEXT NOT NULL,
    call_kind TEXT NOT NULL,
    capability TEXT NOT NULL,
    arguments_sha256 TEXT NOT NULL,
    body TEXT NOT NULL,
    requested_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    decided_at REAL,
    decided_by TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    used_at REAL,
    used_by_call_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS approvals_by_call ON approvals (agent, capability, arguments_sha256, state);
CREATE INDEX IF NOT EXISTS approvals_by_state ON approvals (state, expires_at);
""",
    ),
    Step(
        "tasks: tasks with their leases and fencing tokens, and every transition",
        """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    input_json TEXT NOT NULL,
    idempotency_key TEXT,
    state INTEGER NOT NULL,
    holder_instance_id TEXT NOT NULL,
    holder_agent TEXT NOT NULL,
    fencing_token INTEGER NOT NULL,
    lease_expires_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    lease_ttl_s REAL NOT NULL,
    result_json TEXT NOT NULL,
    error TEXT NOT NULL,
    submitted_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS tasks_by_idempotency_key ON tasks (idempotency_key);
CREATE INDEX IF NOT EXISTS tasks_queued ON tasks (state, kind, created_at);
CREATE INDEX IF NOT EXISTS tasks_by_lease ON tasks (state, lease_expires_at);
CREATE TABLE IF NOT EXISTS task_transitions (
    task_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    from_state INTEGER NOT NULL,
    to_state INTEGER NOT NULL,
    executor TEXT NOT NULL,
    fencing_token INTEGER NOT NULL,
    lease_expires_at REAL NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
);
""",
    ),
    Step(
        "budgets: the caps operators set, their spend per period, and the slices sidecars lease "
        "(a slice row is kept after it ends, so a late report is still charged; purged a day later)",
        """
CREATE TABLE IF NOT EXISTS budgets (
    id TEXT PRIMARY KEY,
    scope INTEGER NOT NULL,
    scope_value TEXT NOT NULL,
    period INTEGER NOT NULL,
    limit_micro_usd INTEGER NOT NULL,
    soft_limit_micro_usd INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (scope, scope_value, period)
);
CREATE TABLE IF NOT EXISTS budget_spend (
    budget_id TEXT NOT NULL,
    period_key TEXT NOT NULL,
    subject TEXT NOT NULL,
    spent_micro_usd INTEGER NOT NULL,
    soft_crossed INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (budget_id, period_key, subject)
);
CREATE TABLE IF NOT EXISTS budget_slices (
    id TEXT PRIMARY KEY,
    budget_id TEXT NOT NULL,
    period_key TEXT NOT NULL,
    subject TEXT NOT NULL,
    holder_instance_id TEXT NOT NULL,
    holder_spiffe_id TEXT NOT NULL,
    granted_micro_usd INTEGER NOT NULL,
    used_micro_usd INTEGER NOT NULL,
    in_flight_micro_usd INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    recalled INTEGER NOT NULL,
    live INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS budget_slices_by_key ON budget_slices (budget_id, period_key, subject);
CREATE INDEX IF NOT EXISTS budget_slices_by_expiry ON budget_slices (live, expires_at);
INSERT OR IGNORE INTO meta (key, value) VALUES ('budgets_revision', 0);
""",
    ),
    Step(
        "signed receipt heads: each chain's head as its sidecar signed it (registry.receipt_signatures)",
        """
CREATE TABLE IF NOT EXISTS receipt_head_signatures (
    sidecar_instance_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    signer_spiffe_id TEXT NOT NULL,
    signed_head BLOB NOT NULL
);
""",
    ),
    Step(
        "session aggregates: each session's totals and cost shares, kept as its receipts arrive; receipt checkpoints",
        """
CREATE TABLE IF NOT EXISTS session_aggregates (
    session_id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    last_activity_at REAL NOT NULL,
    calls INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    cost_micro_usd INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    agents TEXT NOT NULL,
    teams TEXT NOT NULL,
    outcome TEXT NOT NULL,
    activity_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS session_aggregates_by_activity ON session_aggregates (activity_at, session_id);
CREATE INDEX IF NOT EXISTS session_aggregates_by_outcome ON session_aggregates (outcome, activity_at, session_id);
CREATE INDEX IF NOT EXISTS session_aggregates_by_workflow ON session_aggregates (workflow_id);
CREATE TABLE IF NOT EXISTS session_members (
    role TEXT NOT NULL CHECK (role IN ('agent', 'team')),
    name TEXT NOT NULL,
    session_id TEXT NOT NULL,
    PRIMARY KEY (role, name, session_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS session_members_by_session ON session_members (session_id);
CREATE TABLE IF NOT EXISTS session_cost_shares (
    by_key TEXT NOT NULL,
    key TEXT NOT NULL,
    in_session INTEGER NOT NULL,
    session_id TEXT NOT NULL,
    calls INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    cost_micro_usd INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    PRIMARY KEY (by_key, key, in_session, session_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS session_cost_shares_by_session ON session_cost_shares (session_id, in_session);
CREATE INDEX IF NOT EXISTS receipts_without_session ON receipts (call_id) WHERE session_id = '';
CREATE TABLE IF NOT EXISTS receipt_checkpoints (
    sidecar_instance_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    cut_at REAL NOT NULL,
    digest TEXT NOT NULL
);
""",
    ),
    Step(
        "receipts: the task each call was made for, indexed, so `tasks show` finds a task's calls "
        "without reading every receipt (receipts stored before this step keep task_id '')",
        """
ALTER TABLE receipts ADD COLUMN task_id TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS receipts_by_task ON receipts (task_id, started_at) WHERE task_id != '';
""",
    ),
    Step(
        "session principals, signals and call facts: who each session was started for, signs it loops, "
        "what each call changed (issue 19)",
        """
CREATE TABLE IF NOT EXISTS session_principals (
    session_id TEXT PRIMARY KEY,
    started_for TEXT NOT NULL,
    launched_by TEXT NOT NULL,
    conflict TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS session_principals_by_principal ON session_principals (started_for);
CREATE TABLE IF NOT EXISTS session_signals (
    session_id TEXT PRIMARY KEY,
    max_repeats INTEGER NOT NULL,
    repeated_capability TEXT NOT NULL,
    retries INTEGER NOT NULL,
    successes INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS call_facts (
    call_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    latency_us INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    cost_micro_usd INTEGER NOT NULL,
    capability TEXT NOT NULL,
    call_kind TEXT NOT NULL,
    callee_agent TEXT NOT NULL,
    version TEXT NOT NULL,
    spender_agent TEXT NOT NULL,
    model TEXT NOT NULL,
    bundle_revision INTEGER NOT NULL,
    tool TEXT NOT NULL,
    tool_schema TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS call_facts_by_session ON call_facts (session_id);
CREATE INDEX IF NOT EXISTS call_facts_by_start ON call_facts (started_at);
DELETE FROM meta WHERE key = 'session_aggregates_filled';
""",
    ),
    Step(
        "join tokens: the operator credential that made each, so an enrolment records who let the agent in "
        "(tokens made before this step keep '')",
        """
ALTER TABLE join_tokens ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
ALTER TABLE join_tokens ADD COLUMN created_by_claim TEXT NOT NULL DEFAULT '';
""",
    ),
    Step(
        "kill effects: each switch's time to effect, as the servicer that engaged it measured, for `kill list`",
        """
CREATE TABLE IF NOT EXISTS kill_effects (
    switch_id TEXT PRIMARY KEY,
    enforced INTEGER NOT NULL,
    expected INTEGER NOT NULL,
    took_s REAL NOT NULL
) WITHOUT ROWID;
""",
    ),
    Step(
        "cost totals: each cost table's rows kept as running totals, moved by every change to the cost shares "
        "(issue 18 item 7: a cost table reads one row per key, not a share per session)",
        """
CREATE TABLE IF NOT EXISTS cost_totals (
    by_key TEXT NOT NULL,
    key TEXT NOT NULL,
    shares INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    cost_micro_usd INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    sessions INTEGER NOT NULL,
    successful_outcomes INTEGER NOT NULL,
    failed_session_cost_micro_usd INTEGER NOT NULL,
    PRIMARY KEY (by_key, key)
) WITHOUT ROWID;
"""
        + REBUILD_COST_TOTALS,
    ),
    Step(
        "tasks by holder: the tasks each agent holds, counted from an index for `agents list`",
        """
CREATE INDEX IF NOT EXISTS tasks_by_holder_agent ON tasks (holder_agent, state);
""",
    ),
    Step(
        "session labels: the free labels each session was started with (issue 19 question 3), one row per "
        "label, filtered through the (key, value) index",
        """
CREATE TABLE IF NOT EXISTS session_labels (
    session_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (session_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS session_labels_by_label ON session_labels (key, value);
""",
    ),
)

SCHEMA_VERSION: Final = len(STEPS)


def version_on_disk(path: Path) -> int:
    """The schema version of the database at `path` (0 when there is none), read without changing it."""
    if not path.exists():
        return 0
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    finally:
        db.close()


def migrate(db: sqlite3.Connection, path: Path, steps: tuple[Step, ...] = STEPS) -> None:
    """Runs the steps `db` has not run, in one transaction; refuses a newer database."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > len(steps):
        raise StoreError(
            f"{path} has schema version {version}, newer than this registry understands ({len(steps)}); "
            "run a newer meshwarden or use another --data-dir"
        )
    pending = steps[version:]
    if not pending:
        return
    try:
        db.executescript(
            "BEGIN;" + "".join(step.sql for step in pending) + f"PRAGMA user_version = {len(steps)}; COMMIT;"
        )
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        failed = steps[version].name if version < len(steps) else "?"
        raise StoreError(f"cannot upgrade {path} from schema version {version} ({failed}...): {exc}") from exc
    if version:
        names = "; ".join(step.name.split(":")[0] for step in pending)
        log.info("upgraded %s from schema version %d to %d (%s)", path, version, len(steps), names)
