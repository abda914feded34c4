"""Session outcomes: stored once, checked, kept across a restart, and added to older databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from meshwarden.registry.errors import Conflict, InvalidInput
from meshwarden.registry.outcomes import Outcomes
from meshwarden.registry.store import Stores
from meshwarden.registry.store.sqlite import DB_NAME, SCHEMA_VERSION, open_sqlite
from tests.unit.registry.conftest import WITHOUT_RECEIPT_TASK_COLUMN
from tests.unit.sidecar.fakes import FakeClock


async def test_an_outcome_is_stored_once_and_a_second_report_names_the_first(tmp_path: Path) -> None:
    stores = await open_sqlite(tmp_path, event_log_retention=10)
    try:
        outcomes = Outcomes(stores.outcomes, FakeClock())
        await outcomes.report("s1", "succeeded", "ticket resolved", reported_by="frontdesk")
        with pytest.raises(Conflict, match="succeeded, reported by frontdesk"):
            await outcomes.report("s1", "failed", "", reported_by="billing")
    finally:
        await stores.close()
    reopened = await open_sqlite(tmp_path, event_log_retention=10)
    try:
        stored = await Outcomes(reopened.outcomes, FakeClock()).get("s1")
        assert stored is not None and (stored.outcome, stored.detail, stored.reported_by) == (
            "succeeded",
            "ticket resolved",
            "frontdesk",
        )
    finally:
        await reopened.close()


@pytest.mark.parametrize(
    ("session", "outcome", "detail", "field"),
    [("", "succeeded", "", "session_id"), ("s", "won", "", "outcome"), ("s", "failed", "x" * 2001, "detail")],
)
async def test_bad_reports_are_refused_naming_the_field(
    stores: Stores, session: str, outcome: str, detail: str, field: str
) -> None:
    with pytest.raises(InvalidInput, match=field):
        await Outcomes(stores.outcomes, FakeClock()).report(session, outcome, detail, reported_by="a")


async def test_many_sessions_are_looked_up_in_chunks(stores: Stores) -> None:
    outcomes = Outcomes(stores.outcomes, FakeClock())
    for n in range(0, 1200, 2):
        await outcomes.report(f"s{n}", "abandoned", "", reported_by="a")
    found = await outcomes.for_sessions(f"s{n}" for n in range(1200))
    assert len(found) == 600 and found["s2"].outcome == "abandoned" and "s1" not in found


async def test_a_version_5_database_gains_the_outcomes_table(tmp_path: Path) -> None:
    await (await open_sqlite(tmp_path, event_log_retention=10)).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript(WITHOUT_RECEIPT_TASK_COLUMN + "DROP TABLE session_outcomes; PRAGMA user_version = 5;")
    db.close()
    stores = await open_sqlite(tmp_path, event_log_retention=10)
    try:
        assert await stores.outcomes.for_sessions(["s1"]) == {}
    finally:
        await stores.close()
    assert sqlite3.connect(tmp_path / DB_NAME).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
