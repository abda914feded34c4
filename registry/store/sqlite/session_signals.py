"""Who each session was started for and the signs that it loops, in SQLite: the tables
`session_principals` and `session_signals` (one row per session each; its free labels one row
per label in `session_labels`, whose (key, value) index answers `--label key=value`), rewritten beside the
session's aggregate in the transaction of every receipt batch that touches it
(registry.store.sqlite.sessions.store_aggregates). Kept apart from the aggregates so each
store can add them on its own (PostgreSQL keeps the same: registry.store.postgres.session_signals).

Suspects are running sessions past a threshold (registry.session_signals); the conditions are
written once here, as SQL, for the list and for the gauge's counts.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from meshwarden.registry.store.records import SessionPrincipal, SessionSignals, SuspectThresholds

# Each reason's condition over session_aggregates `a` and session_signals `s` (running sessions).
CONDITIONS: Final = {
    "repeating": "s.max_repeats >= :repeats",
    "retrying": "(s.retries > 0 AND s.retries > :per_success * max(s.successes, 1))",
    "spending": "(a.cost_micro_usd >= :spend AND a.activity_at >= :now - :within)",
    "idle": "a.activity_at < :now - :idle",
}
PRINCIPAL_COLUMNS: Final = (
    "p.started_for, p.launched_by, p.conflict, (SELECT json_group_array(json_array(l.key, l.value)) "
    "FROM session_labels l WHERE l.session_id = p.session_id)"
)
SIGNAL_COLUMNS: Final = "s.max_repeats, s.repeated_capability, s.retries, s.successes"


def put(db: sqlite3.Connection, principal: SessionPrincipal, signals: SessionSignals) -> None:
    """Rewrites one session's rows (inside the caller's transaction)."""
    db.execute(
        "INSERT OR REPLACE INTO session_principals (session_id, started_for, launched_by, conflict) VALUES (?, ?, ?, ?)",
        (principal.session_id, principal.started_for, principal.launched_by, principal.conflict),
    )
    db.execute("DELETE FROM session_labels WHERE session_id = ?", (principal.session_id,))
    db.executemany(
        "INSERT INTO session_labels (session_id, key, value) VALUES (?, ?, ?)",
        [(principal.session_id, key, value) for key, value in principal.labels],
    )
    db.execute(
        "INSERT OR REPLACE INTO session_signals (session_id, max_repeats, repeated_capability, retries, successes) "
        "VALUES (?, ?, ?, ?, ?)",
        (signals.session_id, signals.max_repeats, signals.repeated_capability, signals.retries, signals.successes),
    )


def parameters(limits: SuspectThresholds, now: float) -> dict[str, object]:
    return {
        "repeats": limits.repeats,
        "per_success": limits.retries_per_success,
        "spend": limits.spend_micro_usd,
        "within": limits.spending_within_s,
        "idle": limits.idle_s,
        "now": now,
    }


def suspect_where(reason: str) -> str:
    """The condition a suspect meets: running, and past one threshold (or `reason`'s)."""
    crossed = CONDITIONS[reason] if reason else " OR ".join(CONDITIONS.values())
    return f"a.outcome = '' AND ({crossed})"


def counts(db: sqlite3.Connection, limits: SuspectThresholds, now: float) -> dict[str, int]:
    sums = ", ".join(f"coalesce(sum({condition}), 0)" for condition in CONDITIONS.values())
    row = db.execute(
        f"SELECT {sums} FROM session_aggregates a JOIN session_signals s ON s.session_id = a.session_id "
        "WHERE a.outcome = ''",
        parameters(limits, now),
    ).fetchone()
    return {reason: int(value) for reason, value in zip(CONDITIONS, row, strict=True)}


def label_filter(count: int) -> str:
    """The condition that a listed session (`a`) has one label: `count` of them, AND-ed."""
    one = "a.session_id IN (SELECT session_id FROM session_labels WHERE key = ? AND value = ?)"  # its index
    return " AND ".join([one] * count)
