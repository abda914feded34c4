from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from meshwarden.cli.route_cmd import parse_weights
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.routes import Routes
from meshwarden.registry.store import DB_NAME, SCHEMA_VERSION, Store
from tests.unit.sidecar.fakes import FakeClock


def test_routes_are_stored_normalized_replaced_and_cleared(tmp_path: Path) -> None:
    store = Store.open(tmp_path, event_log_retention=10)
    try:
        routes = Routes(store, FakeClock())
        routes.set("echo", {"1.0.0": 90, "2.0.0": 10})
        routes.set("echo", {"2.0.0": 100})
        routes.set("billing.refund", {"3.1.0": 1})
        assert [(r.capability, dict(r.weights)) for r in routes.list()] == [
            ("billing.refund", {"3.1.0": 1}),
            ("echo", {"2.0.0": 100}),
        ]
        cleared = routes.set("echo", {})
        assert cleared.weights == {} and [r.capability for r in routes.list()] == ["billing.refund"]
    finally:
        store.close()
    reopened = Store.open(tmp_path, event_log_retention=10)
    try:
        assert [r.capability for r in Routes(reopened, FakeClock()).list()] == ["billing.refund"]
    finally:
        reopened.close()


@pytest.mark.parametrize(
    ("weights", "message"),
    [({"two": 1}, "not a semantic version"), ({"1.0.0": 0, "2.0.0": 0}, "all 0"), ({"1.0.0": 10**7}, "weights are 0")],
)
def test_bad_routes_are_refused(tmp_path: Path, weights: dict[str, int], message: str) -> None:
    store = Store.open(tmp_path, event_log_retention=10)
    try:
        with pytest.raises(InvalidInput, match=message):
            Routes(store, FakeClock()).set("echo", weights)
    finally:
        store.close()


def test_a_version_3_database_gains_the_routes_table(tmp_path: Path) -> None:
    Store.open(tmp_path, event_log_retention=10).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript("DROP TABLE routes; PRAGMA user_version = 3;")
    db.close()
    store = Store.open(tmp_path, event_log_retention=10)
    try:
        assert store.query("SELECT COUNT(*) FROM routes") == [(0,)]
    finally:
        store.close()
    assert sqlite3.connect(tmp_path / DB_NAME).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_weights_flag_parsing() -> None:
    assert parse_weights("2.3.1=90, 2.4.0=10") == {"2.3.1": 90, "2.4.0": 10}
    for bad in ("2.3.1", "2.3.1=x", "=5", "1.0.0=1,1.0.0=2", "1.0.0=-1"):
        with pytest.raises(ValueError):
            parse_weights(bad)
