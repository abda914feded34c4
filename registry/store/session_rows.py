"""How both stores read a listed session: the same columns in the same order, decoded once.

Each store writes its own SQL for the principal's columns (their JSON functions differ), but
what a listed row holds and where is shared here, so a column added to the listing is added
and read in one place.
"""

from __future__ import annotations

import json
from typing import Any, Final

from meshwarden.registry.store.records import (
    ListedSession,
    SessionAggregate,
    SessionPrincipal,
    SessionSignals,
    StoredOutcome,
)
from meshwarden.session_labels import Labels

AGGREGATE_COLUMNS: Final = (
    "session_id",
    "workflow_id",
    "started_at",
    "last_activity_at",
    "calls",
    "failures",
    "cost_micro_usd",
    "input_tokens",
    "output_tokens",
    "agents",
    "teams",
)
_ACTIVITY_AT: Final = len(AGGREGATE_COLUMNS)  # a.activity_at: the later of the last call and the outcome
_OUTCOME_AT: Final = _ACTIVITY_AT + 1
PRINCIPAL_AT: Final = _OUTCOME_AT + 4  # where the store's principal columns start in a listed row
SIGNALS_AT: Final = PRINCIPAL_AT + 4  # where the signal columns start, when a query adds them


def listed_columns(principal_columns: str) -> str:
    """The SELECT list of a listed session over `session_aggregates a`, `session_outcomes o`
    and the store's `principal_columns` (started_for, launched_by, conflict, labels as JSON)."""
    aggregate = ", ".join(f"a.{c}" for c in AGGREGATE_COLUMNS)
    return f"{aggregate}, a.activity_at, o.outcome, o.detail, o.reported_by, o.reported_at, {principal_columns}"


def listed_session(row: Any) -> ListedSession:
    """A row of `listed_columns`, from either store's driver (tuples or records)."""
    session_id = str(row[0])
    found = SessionAggregate(
        session_id=session_id,
        workflow_id=str(row[1]),
        started_at=float(row[2]),
        last_activity_at=float(row[_ACTIVITY_AT]),
        calls=int(row[4]),
        failures=int(row[5]),
        cost_micro_usd=int(row[6]),
        input_tokens=int(row[7]),
        output_tokens=int(row[8]),
        agents=tuple(json.loads(str(row[9]))),
        teams=tuple(json.loads(str(row[10]))),
    )
    outcome = (
        None
        if row[_OUTCOME_AT] is None
        else StoredOutcome(
            session_id=session_id,
            outcome=str(row[_OUTCOME_AT]),
            detail=str(row[_OUTCOME_AT + 1]),
            reported_by=str(row[_OUTCOME_AT + 2]),
            reported_at=float(row[_OUTCOME_AT + 3]),
        )
    )
    principal = principal_of(session_id, row[PRINCIPAL_AT:SIGNALS_AT])
    return ListedSession(aggregate=found, outcome=outcome, principal=principal)


def principal_of(session_id: str, row: Any) -> SessionPrincipal | None:
    """The principal from the principal columns of a LEFT JOIN (None: no row yet)."""
    if row[0] is None:
        return None
    return SessionPrincipal(
        session_id=session_id,
        started_for=str(row[0]),
        launched_by=str(row[1]),
        conflict=str(row[2]),
        labels=labels_of(str(row[3])),
    )


def labels_of(text: str) -> Labels:
    """Labels from the JSON array of [key, value] pairs the principal columns build, by key."""
    return tuple(sorted((str(key), str(value)) for key, value in json.loads(text)))


def signals_of(session_id: str, row: Any) -> SessionSignals:
    """A session's signals from the signal columns (SIGNAL_COLUMNS of either store)."""
    return SessionSignals(
        session_id=session_id,
        max_repeats=int(row[0]),
        repeated_capability=str(row[1]),
        retries=int(row[2]),
        successes=int(row[3]),
    )
