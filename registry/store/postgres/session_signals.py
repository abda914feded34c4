"""Who each session was started for and the signs that it loops, in PostgreSQL: the tables
`session_principals` and `session_signals` (one row per session each; its labels one row per label
in `session_labels`), the same as SQLite's
(registry.store.sqlite.session_signals), rewritten beside the session's aggregate in the
transaction of every receipt batch that touches it, under the session's advisory lock
(registry.store.postgres.sessions.store_aggregates), so replicas never lose one another's.

Suspects are running sessions past a threshold (registry.session_signals); the conditions are
written once here, as SQL over the thresholds' row (`parameters` gives them in order), for the
list and for the gauge's counts.
"""

from __future__ import annotations

from typing import Any, Final

from meshwarden.registry.store.records import SessionPrincipal, SessionSignals, SuspectThresholds

# The thresholds as one row `t` of numbered parameters (every statement names them all, typed,
# whichever conditions it uses); the caller's own parameters start at $7.
THRESHOLDS: Final = (
    "(SELECT $1::bigint AS repeats, $2::float8 AS per_success, $3::bigint AS spend, $4::float8 AS within, "
    "$5::float8 AS idle, $6::float8 AS now) t"
)
PARAMETERS: Final = 6
# Each reason's condition over session_aggregates `a`, session_signals `s` (running sessions) and `t`.
CONDITIONS: Final = {
    "repeating": "s.max_repeats >= t.repeats",
    "retrying": "(s.retries > 0 AND s.retries > t.per_success * greatest(s.successes, 1))",
    "spending": "(a.cost_micro_usd >= t.spend AND a.activity_at >= t.now - t.within)",
    "idle": "a.activity_at < t.now - t.idle",
}
PRINCIPAL_COLUMNS: Final = (
    "p.started_for, p.launched_by, p.conflict, (SELECT coalesce(json_agg(json_build_array(l.key, l.value)), "
    "'[]')::text FROM session_labels l WHERE l.session_id = p.session_id)"
)
SIGNAL_COLUMNS: Final = "s.max_repeats, s.repeated_capability, s.retries, s.successes"
UPSERT_PRINCIPAL: Final = (
    "INSERT INTO session_principals (session_id, started_for, launched_by, conflict) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (session_id) DO UPDATE SET started_for = excluded.started_for, "
    "launched_by = excluded.launched_by, conflict = excluded.conflict"
)
INSERT_LABEL: Final = "INSERT INTO session_labels (session_id, key, value) VALUES ($1, $2, $3)"
DELETE_LABELS: Final = "DELETE FROM session_labels WHERE session_id = ANY($1::text[])"
UPSERT_SIGNALS: Final = (
    "INSERT INTO session_signals (session_id, max_repeats, repeated_capability, retries, successes) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id) DO UPDATE SET max_repeats = excluded.max_repeats, "
    "repeated_capability = excluded.repeated_capability, retries = excluded.retries, successes = excluded.successes"
)


def principal_row(principal: SessionPrincipal) -> tuple[Any, ...]:
    return (principal.session_id, principal.started_for, principal.launched_by, principal.conflict)


def label_rows(principal: SessionPrincipal) -> list[tuple[str, str, str]]:
    return [(principal.session_id, key, value) for key, value in principal.labels]


def signals_row(signals: SessionSignals) -> tuple[Any, ...]:
    return (
        signals.session_id,
        signals.max_repeats,
        signals.repeated_capability,
        signals.retries,
        signals.successes,
    )


def parameters(limits: SuspectThresholds, now: float) -> list[object]:
    return [
        limits.repeats,
        limits.retries_per_success,
        limits.spend_micro_usd,
        limits.spending_within_s,
        limits.idle_s,
        now,
    ]


def suspect_where(reason: str) -> str:
    """The condition a suspect meets: running, and past one threshold (or `reason`'s)."""
    crossed = CONDITIONS[reason] if reason else " OR ".join(CONDITIONS.values())
    return f"a.outcome = '' AND ({crossed})"


COUNTS: Final = (
    "SELECT "
    + ", ".join(f"count(*) FILTER (WHERE {condition})" for condition in CONDITIONS.values())
    + f" FROM session_aggregates a JOIN session_signals s ON s.session_id = a.session_id CROSS JOIN {THRESHOLDS} "
    "WHERE a.outcome = ''"
)


def counts_of(row: Any) -> dict[str, int]:
    return {reason: int(value) for reason, value in zip(CONDITIONS, row, strict=True)}
