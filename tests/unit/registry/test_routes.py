from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from meshwarden.cli.route_cmd import parse_weights
from meshwarden.registry.audit import Audit
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.routes import RouteChanged, Routes
from meshwarden.registry.store import Stores
from meshwarden.registry.store.sqlite import DB_NAME, SCHEMA_VERSION, open_sqlite
from tests.unit.registry.conftest import WITHOUT_RECEIPT_TASK_COLUMN
from tests.unit.sidecar.fakes import FakeClock


def _routes(stores: Stores, published: list[RouteChanged] | None = None) -> Routes:
    clock = FakeClock()
    return Routes(stores.routes, clock, Audit(stores.audit, clock), (published if published is not None else []).append)


async def test_routes_are_stored_normalized_replaced_cleared_and_published(tmp_path: Path) -> None:
    stores = await open_sqlite(tmp_path, event_log_retention=10)
    published: list[RouteChanged] = []
    try:
        routes = _routes(stores, published)
        await routes.set("echo", {"1.0.0": 90, "2.0.0": 10})
        await routes.set("echo", {"2.0.0": 100})
        await routes.set("billing.refund", {"3.1.0": 1})
        assert [(r.capability, dict(r.weights)) for r in await routes.list()] == [
            ("billing.refund", {"3.1.0": 1}),
            ("echo", {"2.0.0": 100}),
        ]
        cleared = await routes.set("echo", {})
        assert cleared.weights == {} and [r.capability for r in await routes.list()] == ["billing.refund"]
        assert [e.route.capability for e in published] == ["echo", "echo", "billing.refund", "echo"]
        # Each change committed its audit entry with it.
        assert [e.detail for e in await stores.audit.list(0.0, 10)] == [
            "1.0.0=90,2.0.0=10",
            "2.0.0=100",
            "3.1.0=1",
            "cleared",
        ]
    finally:
        await stores.close()
    reopened = await open_sqlite(tmp_path, event_log_retention=10)
    try:
        assert [r.capability for r in await _routes(reopened).list()] == ["billing.refund"]
    finally:
        await reopened.close()


@pytest.mark.parametrize(
    ("weights", "message"),
    [({"two": 1}, "not a semantic version"), ({"1.0.0": 0, "2.0.0": 0}, "all 0"), ({"1.0.0": 10**7}, "weights are 0")],
)
async def test_bad_routes_are_refused(stores: Stores, weights: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        await _routes(stores).set("echo", weights)
    assert await stores.audit.list(0.0, 10) == []


async def test_a_version_3_database_gains_the_routes_table(tmp_path: Path) -> None:
    await (await open_sqlite(tmp_path, event_log_retention=10)).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript(WITHOUT_RECEIPT_TASK_COLUMN + "DROP TABLE routes; PRAGMA user_version = 3;")
    db.close()
    stores = await open_sqlite(tmp_path, event_log_retention=10)
    try:
        assert await stores.routes.list() == []
    finally:
        await stores.close()
    assert sqlite3.connect(tmp_path / DB_NAME).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_weights_flag_parsing() -> None:
    assert parse_weights("2.3.1=90, 2.4.0=10") == {"2.3.1": 90, "2.4.0": 10}
    for bad in ("2.3.1", "2.3.1=x", "=5", "1.0.0=1,1.0.0=2", "1.0.0=-1"):
        with pytest.raises(ValueError):
            parse_weights(bad)
