"""The PostgreSQL schema as ordered, named steps; `schema_version` records how many ran.

The same rules as registry.store.sqlite.migrations: a database at version N has run steps
1..N; `migrate` runs the steps after N in one transaction (under an advisory lock, so replicas
starting together migrate once), and a database whose version is beyond the steps this code
knows is refused with a message that says so: an older replica cannot know what newer steps
changed. Add a step at the END of the list; never edit one that shipped.

The tables mirror SQLite's (same names and columns, so the two stores answer alike), with
PostgreSQL types, plus what replicas need: `meta` holds every counter (catalog, controls and
routes revisions) and the change feed wakes on `pg_notify` (registry.store.postgres.changes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import asyncpg

from meshwarden.registry.errors import StoreError
from meshwarden.registry.store.postgres.database import Connection, Database

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key of a migration (any constant no other lock uses).
MIGRATION_LOCK: Final = 7_400_001


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
    sum(c.output_tokens), count(*) FILTER (WHERE c.in_session), count(*) FILTER (WHERE o.outcome = 'succeeded'),
    coalesce(sum(c.cost_micro_usd) FILTER (WHERE o.outcome IN ('failed', 'abandoned')), 0)
FROM session_cost_shares c LEFT JOIN session_outcomes o ON o.session_id = c.session_id AND c.in_session
GROUP BY c.by_key, c.key;
"""

STEPS: Final[tuple[Step, ...]] = (
    Step(
        "catalog: instances with their leases, the event log, the counters",
        """
CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO meta (key, value) VALUES ('revision', 0), ('controls_revision', 0), ('routes_revision', 0);
CREATE TABLE instances (
    instance_id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    lease_expires_at DOUBLE PRECISION NOT NULL,
    svid_expires_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    body TEXT NOT NULL
);
CREATE INDEX instances_by_lease ON instances (lease_expires_at);
CREATE INDEX instances_by_agent ON instances (agent, instance_id);
CREATE TABLE events (
    revision BIGINT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('upserted', 'removed')),
    body TEXT,
    reason TEXT
);
CREATE TABLE join_tokens (
    token_id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    agent TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    used_at DOUBLE PRECISION
);
""",
    ),
    Step(
        "policy bundles, routes, kill switches, isolations, the audit log",
        """
CREATE TABLE policy_bundles (
    revision BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    artifact BYTEA NOT NULL,
    pushed_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE bundle_status (
    instance_id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    active_revision BIGINT NOT NULL,
    active_digest TEXT NOT NULL,
    refused_revision BIGINT NOT NULL,
    refusal TEXT NOT NULL,
    reported_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE routes (
    capability TEXT PRIMARY KEY,
    weights TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE kill_switches (
    id TEXT PRIMARY KEY,
    scope_kind INTEGER NOT NULL,
    scope_value TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION
);
CREATE TABLE isolations (
    agent TEXT NOT NULL,
    version TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (agent, version)
);
CREATE TABLE audit_log (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    claimed_user TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_by_time ON audit_log (at);
""",
    ),
    Step(
        "receipts and session outcomes: each sidecar's chain, its head and signed head",
        """
CREATE TABLE receipt_chains (
    sidecar_instance_id TEXT PRIMARY KEY,
    sidecar_spiffe_id TEXT NOT NULL,
    head_seq BIGINT NOT NULL,
    head_hash TEXT NOT NULL,
    shipped_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE receipts (
    sidecar_instance_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
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
    cost_micro_usd BIGINT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    body BYTEA NOT NULL,
    PRIMARY KEY (sidecar_instance_id, seq)
);
CREATE INDEX receipts_by_session ON receipts (session_id, started_at);
CREATE INDEX receipts_by_start ON receipts (started_at);
CREATE TABLE receipt_head_signatures (
    sidecar_instance_id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    signer_spiffe_id TEXT NOT NULL,
    signed_head BYTEA NOT NULL
);
CREATE TABLE session_outcomes (
    session_id TEXT PRIMARY KEY,
    outcome TEXT NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'abandoned')),
    detail TEXT NOT NULL,
    reported_by TEXT NOT NULL,
    reported_at DOUBLE PRECISION NOT NULL
);
""",
    ),
    Step(
        "shared secrets: the CA, the operator token and the task-signing key every replica uses",
        """
CREATE TABLE shared_files (
    name TEXT PRIMARY KEY,
    content BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
""",
    ),
    Step(
        "health reports: each sidecar's last report, shared by the replicas",
        """
CREATE SEQUENCE health_report_positions;
CREATE TABLE health_reports (
    reporter_agent TEXT NOT NULL,
    reporter_instance_id TEXT NOT NULL,
    reporter_registered BOOLEAN NOT NULL,
    findings TEXT NOT NULL,
    reported_at DOUBLE PRECISION NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (reporter_agent, reporter_instance_id)
);
CREATE INDEX health_reports_by_position ON health_reports (position);
""",
    ),
    Step(
        "approvals and budgets: a person's decision on one call's exact arguments; caps, spend, slices",
        """
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'used')),
    agent TEXT NOT NULL,
    spiffe_id TEXT NOT NULL,
    call_kind TEXT NOT NULL,
    capability TEXT NOT NULL,
    arguments_sha256 TEXT NOT NULL,
    body TEXT NOT NULL,
    requested_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    decided_at DOUBLE PRECISION,
    decided_by TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    used_at DOUBLE PRECISION,
    used_by_call_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX approvals_by_call ON approvals (agent, capability, arguments_sha256, state);
CREATE INDEX approvals_by_state ON approvals (state, expires_at);
CREATE TABLE budgets (
    id TEXT PRIMARY KEY,
    scope INTEGER NOT NULL,
    scope_value TEXT NOT NULL,
    period INTEGER NOT NULL,
    limit_micro_usd BIGINT NOT NULL,
    soft_limit_micro_usd BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    UNIQUE (scope, scope_value, period)
);
CREATE TABLE budget_spend (
    budget_id TEXT NOT NULL,
    period_key TEXT NOT NULL,
    subject TEXT NOT NULL,
    spent_micro_usd BIGINT NOT NULL,
    soft_crossed BOOLEAN NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (budget_id, period_key, subject)
);
CREATE TABLE budget_slices (
    id TEXT PRIMARY KEY,
    budget_id TEXT NOT NULL,
    period_key TEXT NOT NULL,
    subject TEXT NOT NULL,
    holder_instance_id TEXT NOT NULL,
    holder_spiffe_id TEXT NOT NULL,
    granted_micro_usd BIGINT NOT NULL,
    used_micro_usd BIGINT NOT NULL,
    in_flight_micro_usd BIGINT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    recalled BOOLEAN NOT NULL,
    live BOOLEAN NOT NULL
);
CREATE INDEX budget_slices_by_key ON budget_slices (budget_id, period_key, subject);
CREATE INDEX budget_slices_by_expiry ON budget_slices (live, expires_at);
INSERT INTO meta (key, value) VALUES ('budgets_revision', 0), ('approvals_revision', 0);
""",
    ),
    Step(
        "receipts: the task each call was made for, indexed, so `tasks show` finds a task's calls "
        "without reading every receipt (receipts stored before this step keep task_id '')",
        """
ALTER TABLE receipts ADD COLUMN task_id TEXT NOT NULL DEFAULT '';
CREATE INDEX receipts_by_task ON receipts (task_id, started_at) WHERE task_id <> '';
""",
    ),
    Step(
        "tasks: tasks with their leases and fencing tokens, and every transition (shared by the "
        "replicas; before this step each replica kept its tasks in its own SQLite file)",
        """
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    input_json TEXT NOT NULL,
    idempotency_key TEXT,
    state INTEGER NOT NULL,
    holder_instance_id TEXT NOT NULL,
    holder_agent TEXT NOT NULL,
    fencing_token BIGINT NOT NULL,
    lease_expires_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    lease_ttl_s DOUBLE PRECISION NOT NULL,
    result_json TEXT NOT NULL,
    error TEXT NOT NULL,
    submitted_by TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    position BIGINT GENERATED ALWAYS AS IDENTITY  -- submission order where created_at ties (SQLite's rowid)
);
CREATE UNIQUE INDEX tasks_by_idempotency_key ON tasks (idempotency_key);
CREATE INDEX tasks_queued ON tasks (state, kind, created_at, position);
CREATE INDEX tasks_by_lease ON tasks (state, lease_expires_at);
CREATE TABLE task_transitions (
    task_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    from_state INTEGER NOT NULL,
    to_state INTEGER NOT NULL,
    executor TEXT NOT NULL,
    fencing_token BIGINT NOT NULL,
    lease_expires_at DOUBLE PRECISION NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
);
""",
    ),
    Step(
        "session aggregates: each session's totals and cost shares, kept as its receipts arrive; receipt checkpoints",
        """
CREATE TABLE session_aggregates (
    session_id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    last_activity_at DOUBLE PRECISION NOT NULL,
    calls BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    cost_micro_usd BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    agents TEXT NOT NULL,
    teams TEXT NOT NULL,
    outcome TEXT NOT NULL,
    activity_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX session_aggregates_by_activity ON session_aggregates (activity_at, session_id);
CREATE INDEX session_aggregates_by_outcome ON session_aggregates (outcome, activity_at, session_id);
CREATE INDEX session_aggregates_by_workflow ON session_aggregates (workflow_id);
CREATE TABLE session_members (
    role TEXT NOT NULL CHECK (role IN ('agent', 'team')),
    name TEXT NOT NULL,
    session_id TEXT NOT NULL,
    PRIMARY KEY (role, name, session_id)
);
CREATE INDEX session_members_by_session ON session_members (session_id);
CREATE TABLE session_cost_shares (
    by_key TEXT NOT NULL,
    key TEXT NOT NULL,
    in_session BOOLEAN NOT NULL,
    session_id TEXT NOT NULL,
    calls BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    cost_micro_usd BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    PRIMARY KEY (by_key, key, in_session, session_id)
);
CREATE INDEX session_cost_shares_by_session ON session_cost_shares (session_id, in_session);
CREATE INDEX receipts_without_session ON receipts (call_id) WHERE session_id = '';
CREATE TABLE receipt_checkpoints (
    sidecar_instance_id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    cut_at DOUBLE PRECISION NOT NULL,
    digest TEXT NOT NULL
);
INSERT INTO meta (key, value) SELECT 'session_aggregates_filled', CASE WHEN EXISTS (SELECT 1 FROM receipts) THEN 0 ELSE 1 END;
""",
    ),
    Step(
        "control watchers: the sidecars watching each replica and the controls revision each acknowledged",
        """
CREATE TABLE registry_replicas (
    replica_id TEXT PRIMARY KEY,
    seen_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE control_watchers (
    replica_id TEXT NOT NULL REFERENCES registry_replicas (replica_id) ON DELETE CASCADE,
    instance_id TEXT NOT NULL,
    spiffe_id TEXT NOT NULL,
    acknowledged BIGINT NOT NULL,
    PRIMARY KEY (replica_id, instance_id, spiffe_id)
);
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
CREATE TABLE kill_effects (
    switch_id TEXT PRIMARY KEY,
    enforced INTEGER NOT NULL,
    expected INTEGER NOT NULL,
    took_s DOUBLE PRECISION NOT NULL
);
""",
    ),
    Step(
        "session principals, signals and call facts: who each session was started for, signs it loops, "
        "what each call changed (issue 19), kept as receipts arrive as SQLite keeps them; cost totals: each cost "
        "table's rows kept as running totals (issue 18 item 7: a cost table reads one row per key)",
        """
CREATE TABLE session_principals (
    session_id TEXT PRIMARY KEY,
    started_for TEXT NOT NULL,
    launched_by TEXT NOT NULL,
    conflict TEXT NOT NULL
);
CREATE INDEX session_principals_by_principal ON session_principals (started_for);
CREATE TABLE session_signals (
    session_id TEXT PRIMARY KEY,
    max_repeats BIGINT NOT NULL,
    repeated_capability TEXT NOT NULL,
    retries BIGINT NOT NULL,
    successes BIGINT NOT NULL
);
CREATE TABLE call_facts (
    call_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    latency_us BIGINT NOT NULL,
    ok BOOLEAN NOT NULL,
    cost_micro_usd BIGINT NOT NULL,
    capability TEXT NOT NULL,
    call_kind TEXT NOT NULL,
    callee_agent TEXT NOT NULL,
    version TEXT NOT NULL,
    spender_agent TEXT NOT NULL,
    model TEXT NOT NULL,
    bundle_revision BIGINT NOT NULL,
    tool TEXT NOT NULL,
    tool_schema TEXT NOT NULL
);
CREATE INDEX call_facts_by_session ON call_facts (session_id);
CREATE INDEX call_facts_by_start ON call_facts (started_at);
CREATE TABLE cost_totals (
    by_key TEXT NOT NULL,
    key TEXT NOT NULL,
    shares BIGINT NOT NULL,
    calls BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    cost_micro_usd BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    sessions BIGINT NOT NULL,
    successful_outcomes BIGINT NOT NULL,
    failed_session_cost_micro_usd BIGINT NOT NULL,
    PRIMARY KEY (by_key, key)
);
UPDATE meta SET value = CASE WHEN EXISTS (SELECT 1 FROM receipts) THEN 0 ELSE 1 END
    WHERE key = 'session_aggregates_filled';
"""
        + REBUILD_COST_TOTALS,
    ),
    Step(
        "tasks by holder: the tasks each agent holds, counted from an index for `agents list`",
        """
CREATE INDEX tasks_by_holder_agent ON tasks (holder_agent, state);
""",
    ),
    Step(
        "session labels: the free labels each session was started with (issue 19 question 3), one row per "
        "label, filtered through the (key, value) index",
        """
CREATE TABLE session_labels (
    session_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (session_id, key)
);
CREATE INDEX session_labels_by_label ON session_labels (key, value);
""",
    ),
)

SCHEMA_VERSION: Final = len(STEPS)

_VERSION_TABLE: Final = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"


async def version_of(db: Database) -> int:
    """The schema version of the database (0 when empty)."""

    async def work(connection: Connection) -> int:
        exists = await connection.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
        if not exists:
            return 0
        return int(await connection.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))

    return await db.read(work)


async def check(db: Database, steps: tuple[Step, ...] = STEPS) -> None:
    """Refuses a database at a version other than this code's: newer (written by a newer
    meshwarden) or older (not migrated: `meshwarden registry migrate`)."""
    version = await version_of(db)
    if version > len(steps):
        raise StoreError(
            f"{db.location} has schema version {version}, newer than this registry understands ({len(steps)}); "
            "run the newer meshwarden on every replica"
        )
    if version < len(steps):
        raise StoreError(
            f"{db.location} has schema version {version}, older than this registry's ({len(steps)}); "
            "run `meshwarden registry migrate --store URL` first (or serve with --migrate)"
        )


async def migrate(db: Database, steps: tuple[Step, ...] = STEPS) -> tuple[int, int]:
    """Runs the steps the database has not run, in one transaction; refuses a newer database.
    Returns the versions before and after."""

    async def work(connection: Connection) -> tuple[int, int]:
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await connection.execute(_VERSION_TABLE)
        version = int(await connection.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
        if version > len(steps):
            raise StoreError(
                f"{db.location} has schema version {version}, newer than this meshwarden understands "
                f"({len(steps)}); run the newer meshwarden"
            )
        for number, step in enumerate(steps[version:], start=version + 1):
            try:
                await connection.execute(step.sql)
            except asyncpg.PostgresError as exc:
                raise StoreError(f"cannot upgrade {db.location} at step {number} ({step.name}): {exc}") from exc
        await connection.execute("DELETE FROM schema_version")
        await connection.execute("INSERT INTO schema_version (version) VALUES ($1)", len(steps))
        return version, len(steps)

    before, after = await db.write(work)
    if before != after:
        log.info("migrated %s from schema version %d to %d", db.location, before, after)
    return before, after
