"""registry.store against a real SQLite database in a temporary directory."""

from __future__ import annotations

import json
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from meshwarden.registry.errors import StoreError
from meshwarden.registry.model import DEREGISTERED, LEASE_EXPIRED, Capability, Instance, Removed, Upserted
from meshwarden.registry.store import DB_NAME, SCHEMA_VERSION, Store


def _instance(instance_id: str, *, agent: str = "billing", lease: float = 1000.0) -> Instance:
    return Instance(
        instance_id=instance_id,
        agent=agent,
        version="1.2.3",
        peer_address="127.0.0.1:9000",
        capabilities=(
            Capability(name="billing.refund", input_schema_json='{"type":"object"}', schema_hash="sha256:" + "a" * 64),
        ),
        spiffe_id="spiffe://mesh.local/agent/billing",
        registered_at=900.5,
        lease_expires_at=lease,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "data", event_log_retention=100)
    yield opened
    opened.close()


def test_creates_a_private_data_dir_with_a_wal_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    store = Store.open(data_dir, event_log_retention=10)
    try:
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        mode = sqlite3.connect(data_dir / DB_NAME).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        assert store.revision == 0
    finally:
        store.close()


def test_commit_stores_the_instance_and_its_event(store: Store) -> None:
    instance = _instance("a1")
    store.commit(Upserted(revision=1, instance=instance))
    assert store.revision == 1
    assert store.instance("a1") == instance
    assert store.instances() == [instance]
    assert store.events_after(0) == [Upserted(revision=1, instance=instance)]


def test_remove_deletes_the_instance_and_logs_the_reason(store: Store) -> None:
    store.commit(Upserted(revision=1, instance=_instance("a1")))
    store.commit(Removed(revision=2, instance_id="a1", reason=LEASE_EXPIRED))
    assert store.instance("a1") is None
    assert store.events_after(1) == [Removed(revision=2, instance_id="a1", reason=LEASE_EXPIRED)]


def test_refuses_a_revision_that_does_not_follow(store: Store) -> None:
    with pytest.raises(ValueError, match="does not follow"):
        store.commit(Upserted(revision=2, instance=_instance("a1")))
    assert store.revision == 0 and store.instances() == []


def test_state_and_revision_survive_reopening(tmp_path: Path) -> None:
    first = Store.open(tmp_path, event_log_retention=10)
    first.commit(Upserted(revision=1, instance=_instance("a1")))
    first.commit(Upserted(revision=2, instance=_instance("b2", agent="search")))
    first.commit(Removed(revision=3, instance_id="a1", reason=DEREGISTERED))
    first.close()
    second = Store.open(tmp_path, event_log_retention=10)
    try:
        assert second.revision == 3
        assert [i.instance_id for i in second.instances()] == ["b2"]
        assert [e.revision for e in second.events_after(1) or []] == [2, 3]
    finally:
        second.close()


def test_a_second_process_cannot_open_the_same_data_dir(store: Store, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="in use by another registry"):
        Store.open(tmp_path / "data", event_log_retention=100)


def test_events_after_is_none_once_the_log_was_trimmed(tmp_path: Path) -> None:
    store = Store.open(tmp_path, event_log_retention=3)
    try:
        for revision in range(1, 7):
            store.commit(Upserted(revision=revision, instance=_instance(f"i{revision}")))
        assert store.oldest_event_revision() == 4
        assert store.events_after(2) is None  # revision 3 is gone
        assert [e.revision for e in store.events_after(3) or []] == [4, 5, 6]
        assert store.events_after(6) == []
    finally:
        store.close()


def test_events_after_a_revision_ahead_of_the_store_is_none(store: Store) -> None:
    store.commit(Upserted(revision=1, instance=_instance("a1")))
    assert store.events_after(5) is None


def test_set_lease_moves_only_the_lease(store: Store) -> None:
    store.commit(Upserted(revision=1, instance=_instance("a1", lease=1000.0)))
    assert store.set_lease("a1", 2000.0) is True
    assert store.set_lease("missing", 2000.0) is False
    renewed = store.instance("a1")
    assert renewed is not None and renewed.lease_expires_at == 2000.0
    assert store.revision == 1
    # The logged event keeps the lease as it was at the change.
    logged = store.events_after(0)
    assert logged is not None and isinstance(logged[0], Upserted) and logged[0].instance.lease_expires_at == 1000.0


def test_expiry_queries_and_extension(store: Store) -> None:
    store.commit(Upserted(revision=1, instance=_instance("early", lease=100.0)))
    store.commit(Upserted(revision=2, instance=_instance("late", lease=300.0)))
    assert store.earliest_lease_expiry() == 100.0
    assert store.expired_ids(now=100.0) == ["early"]
    assert store.expired_ids(now=99.9) == []
    assert store.extend_all_leases(until=200.0) == 1
    assert store.expired_ids(now=250.0) == ["early"]
    late = store.instance("late")
    assert late is not None and late.lease_expires_at == 300.0


def test_refuses_a_database_from_a_newer_schema(tmp_path: Path) -> None:
    Store.open(tmp_path, event_log_retention=10).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store.open(tmp_path, event_log_retention=10)
    # The refused open released its lock: once fixed, the database opens again.
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.commit()
    db.close()
    Store.open(tmp_path, event_log_retention=10).close()


# The schema and one row as registry version 1 (before identity) wrote them.
_V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE instances (instance_id TEXT PRIMARY KEY, agent TEXT NOT NULL, lease_expires_at REAL NOT NULL,
                        body TEXT NOT NULL);
CREATE INDEX instances_by_lease ON instances (lease_expires_at);
CREATE TABLE events (revision INTEGER PRIMARY KEY, instance_id TEXT NOT NULL,
                     kind TEXT NOT NULL CHECK (kind IN ('upserted', 'removed')), body TEXT, reason TEXT);
INSERT INTO meta (key, value) VALUES ('revision', 1);
PRAGMA user_version = 1;
"""


def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    old = _instance("a1")
    body = {k: v for k, v in asdict(old).items() if k not in ("lease_expires_at", "svid_expires_at")}
    event_body = {**body, "lease_expires_at": old.lease_expires_at}
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript(_V1_SCHEMA)
    db.execute("INSERT INTO instances VALUES ('a1', 'billing', ?, ?)", (old.lease_expires_at, json.dumps(body)))
    db.execute("INSERT INTO events VALUES (1, 'a1', 'upserted', ?, NULL)", (json.dumps(event_body),))
    db.commit()
    db.close()
    store = Store.open(tmp_path, event_log_retention=10)
    try:
        assert store.instance("a1") == old and old.svid_expires_at == 0.0
        assert store.events_after(0) == [Upserted(revision=1, instance=old)]
        assert store.query("SELECT COUNT(*) FROM join_tokens") == [(0,)]
        assert store.set_lease("a1", 2000.0, svid_expires_at=3000.0)
        assert store.instance("a1") == replace(old, lease_expires_at=2000.0, svid_expires_at=3000.0)
    finally:
        store.close()
    assert sqlite3.connect(tmp_path / DB_NAME).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_an_unusable_data_dir_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the registry data directory"):
        Store.open(blocker / "data", event_log_retention=10)
