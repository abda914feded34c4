"""Session outcomes: stored once, checked, kept across a restart, and added to older databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from meshwarden.registry.errors import Conflict, InvalidInput
from meshwarden.registry.outcomes import Outcomes
from meshwarden.registry.store import DB_NAME, SCHEMA_VERSION, Store
from tests.unit.sidecar.fakes import FakeClock


def test_an_outcome_is_stored_once_and_a_second_report_names_the_first(tmp_path: Path) -> None:
    store = Store.open(tmp_path, event_log_retention=10)
    try:
        outcomes = Outcomes(store, FakeClock())
        outcomes.report("s1", "succeeded", "ticket resolved", reported_by="frontdesk")
        with pytest.raises(Conflict, match="succeeded, reported by frontdesk"):
            outcomes.report("s1", "failed", "", reported_by="billing")
    finally:
        store.close()
    reopened = Store.open(tmp_path, event_log_retention=10)
    try:
        stored = Outcomes(reopened, FakeClock()).get("s1")
        assert stored is not None and (stored.outcome, stored.detail, stored.reported_by) == (
            "succeeded",
            "ticket resolved",
            "frontdesk",
        )
    finally:
        reopened.close()


@pytest.mark.parametrize(
    ("session", "outcome", "detail", "field"),
    [("", "succeeded", "", "session_id"), ("s", "won", "", "outcome"), ("s", "failed", "x" * 2001, "detail")],
)
def test_bad_reports_are_refused_naming_the_field(
    tmp_path: Path, session: str, outcome: str, detail: str, field: str
) -> None:
    store = Store.open(tmp_path, event_log_retention=10)
    try:
        with pytest.raises(InvalidInput, match=field):
            Outcomes(store, FakeClock()).report(session, outcome, detail, reported_by="a")
    finally:
        store.close()


def test_many_sessions_are_looked_up_in_chunks(tmp_path: Path) -> None:
    store = Store.open(tmp_path, event_log_retention=10)
    try:
        outcomes = Outcomes(store, FakeClock())
        for n in range(0, 1200, 2):
            outcomes.report(f"s{n}", "abandoned", "", reported_by="a")
        found = outcomes.for_sessions(f"s{n}" for n in range(1200))
        assert len(found) == 600 and found["s2"].outcome == "abandoned" and "s1" not in found
    finally:
        store.close()


def test_a_version_5_database_gains_the_outcomes_table(tmp_path: Path) -> None:
    Store.open(tmp_path, event_log_retention=10).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript("DROP TABLE session_outcomes; PRAGMA user_version = 5;")
    db.close()
    store = Store.open(tmp_path, event_log_retention=10)
    try:
        assert store.query("SELECT COUNT(*) FROM session_outcomes") == [(0,)]
    finally:
        store.close()
    assert sqlite3.connect(tmp_path / DB_NAME).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
