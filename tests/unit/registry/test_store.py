"""registry.store.sqlite's catalog and leases against a real SQLite database in a temporary
directory, and what opening the database does (permissions, lock, schema steps)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from meshwarden.registry.errors import StoreError
from meshwarden.registry.model import (
    DEREGISTERED,
    JOIN_TOKEN,
    LEASE_EXPIRED,
    NOT_RECORDED,
    SPIRE,
    Capability,
    Enrolment,
    Instance,
    Removed,
    Upserted,
)
from meshwarden.registry.store import AuditEntry, Stores
from meshwarden.registry.store.instance_codec import instance_body, instance_from_row
from meshwarden.registry.store.sqlite import DB_NAME, SCHEMA_VERSION, STEPS, Database, open_sqlite
from meshwarden.registry.store.sqlite.migrations import Step, migrate


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


async def test_creates_a_private_data_dir_with_a_private_wal_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    stores = await open_sqlite(data_dir, event_log_retention=10)
    try:
        await stores.catalog.upsert(_instance("a1"))  # the WAL file exists once something was written
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
            assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name
        mode = sqlite3.connect(data_dir / DB_NAME).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        await stores.close()


async def test_upsert_takes_the_next_revision_from_the_store(stores: Stores) -> None:
    assert await stores.catalog.revision() == 0
    instance = _instance("a1")
    assert await stores.catalog.upsert(instance) == Upserted(revision=1, instance=instance)
    assert await stores.catalog.revision() == 1
    assert await stores.catalog.instance("a1") == instance
    snapshot = await stores.catalog.snapshot()
    assert snapshot.revision == 1 and snapshot.instances == (instance,)
    assert await stores.catalog.events_after(0) == [Upserted(revision=1, instance=instance)]


async def test_an_instance_keeps_who_enrolled_it(stores: Stores) -> None:
    enrolment = Enrolment(
        how=JOIN_TOKEN,
        principal="operator:sha256:0123456789abcdef",
        token_id="jt-1",
        claimed_user="ann",
        enrolled_at=800.5,
    )
    instance = replace(_instance("a1"), enrolment=enrolment)
    await stores.catalog.upsert(instance)
    assert await stores.catalog.instance("a1") == instance
    assert (await stores.catalog.snapshot()).instances == (instance,)
    assert await stores.catalog.events_after(0) == [Upserted(revision=1, instance=instance)]
    await stores.catalog.upsert(_instance("a2"))  # registered without one: said so, not blank
    stored = await stores.catalog.instance("a2")
    assert stored is not None and stored.enrolment == NOT_RECORDED and stored.enrolment.principal == "unrecorded"


def test_an_instance_stored_before_enrolments_were_kept_reads_as_unrecorded() -> None:
    body = json.loads(instance_body(replace(_instance("a1"), enrolment=Enrolment(how=SPIRE, principal=SPIRE))))
    assert body["enrolment"]["principal"] == SPIRE
    del body["enrolment"]
    assert instance_from_row(json.dumps(body), 1000.0, 0.0).enrolment == NOT_RECORDED


async def test_concurrent_changes_get_distinct_consecutive_revisions(stores: Stores) -> None:
    events = await asyncio.gather(*(stores.catalog.upsert(_instance(f"i{n}")) for n in range(20)))
    assert sorted(e.revision for e in events) == list(range(1, 21))
    assert [e.revision for e in await stores.catalog.events_after(0) or []] == list(range(1, 21))


async def test_remove_deletes_the_instance_and_logs_the_reason(stores: Stores) -> None:
    await stores.catalog.upsert(_instance("a1"))
    assert await stores.catalog.remove("a1", LEASE_EXPIRED) == Removed(
        revision=2, instance_id="a1", reason=LEASE_EXPIRED
    )
    assert await stores.catalog.instance("a1") is None
    assert await stores.catalog.events_after(1) == [Removed(revision=2, instance_id="a1", reason=LEASE_EXPIRED)]


async def test_removing_an_unknown_instance_uses_no_revision(stores: Stores) -> None:
    assert await stores.catalog.remove("missing", DEREGISTERED) is None
    assert await stores.catalog.revision() == 0 and await stores.catalog.events_after(0) == []


async def test_state_and_revision_survive_reopening(tmp_path: Path) -> None:
    first = await open_sqlite(tmp_path, event_log_retention=10)
    await first.catalog.upsert(_instance("a1"))
    await first.catalog.upsert(_instance("b2", agent="search"))
    await first.catalog.remove("a1", DEREGISTERED)
    await first.close()
    second = await open_sqlite(tmp_path, event_log_retention=10)
    try:
        assert await second.catalog.revision() == 3
        assert [i.instance_id for i in (await second.catalog.snapshot()).instances] == ["b2"]
        assert [e.revision for e in await second.catalog.events_after(1) or []] == [2, 3]
    finally:
        await second.close()


@pytest.mark.usefixtures("sqlite_only")
async def test_a_second_process_cannot_open_the_same_data_dir(stores: Stores, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="in use by another registry"):
        await open_sqlite(tmp_path / "data", event_log_retention=100)


async def test_events_after_is_none_once_the_log_was_trimmed(tmp_path: Path) -> None:
    stores = await open_sqlite(tmp_path, event_log_retention=3)
    try:
        for n in range(1, 7):
            await stores.catalog.upsert(_instance(f"i{n}"))
        assert await stores.catalog.events_after(2) is None  # revision 3 is gone
        assert [e.revision for e in await stores.catalog.events_after(3) or []] == [4, 5, 6]
        assert await stores.catalog.events_after(6) == []
    finally:
        await stores.close()


async def test_events_after_a_revision_ahead_of_the_store_is_none(stores: Stores) -> None:
    await stores.catalog.upsert(_instance("a1"))
    assert await stores.catalog.events_after(5) is None


async def test_set_lease_moves_only_the_lease(stores: Stores) -> None:
    await stores.catalog.upsert(_instance("a1", lease=1000.0))
    assert await stores.leases.set_lease("a1", 2000.0) is True
    assert await stores.leases.set_lease("missing", 2000.0) is False
    renewed = await stores.catalog.instance("a1")
    assert renewed is not None and renewed.lease_expires_at == 2000.0
    assert await stores.catalog.revision() == 1
    # The logged event keeps the lease as it was at the change.
    logged = await stores.catalog.events_after(0)
    assert logged is not None and isinstance(logged[0], Upserted) and logged[0].instance.lease_expires_at == 1000.0


async def test_a_snapshot_shows_the_current_lease_and_body_of_each_instance(stores: Stores) -> None:
    first = _instance("a1", lease=1000.0)
    await stores.catalog.upsert(first)
    assert (await stores.catalog.snapshot()).instances == (first,)
    await stores.leases.set_lease("a1", 2000.0, svid_expires_at=3000.0)  # a renewal: same body
    renewed = replace(first, lease_expires_at=2000.0, svid_expires_at=3000.0)
    assert (await stores.catalog.snapshot()).instances == (renewed,)
    changed = replace(first, version="2.0.0", lease_expires_at=2500.0)  # re-registered: a new body
    await stores.catalog.upsert(changed)
    assert (await stores.catalog.snapshot()).instances == (changed,)


async def test_add_refuses_an_id_in_use_without_using_a_revision(stores: Stores) -> None:
    assert await stores.catalog.add(_instance("a1")) == Upserted(revision=1, instance=_instance("a1"))
    assert await stores.catalog.add(_instance("a1", agent="search")) is None
    assert await stores.catalog.revision() == 1 and await stores.catalog.instance("a1") == _instance("a1")


async def test_a_conditional_lease_moves_only_a_live_lease_of_that_agent(stores: Stores) -> None:
    await stores.catalog.upsert(_instance("a1", lease=1000.0))
    assert not await stores.leases.set_lease("a1", 2000.0, agent="search")
    assert not await stores.leases.set_lease("a1", 2000.0, agent="billing", live_at=1000.0)  # ended at 1000
    assert await stores.leases.set_lease("a1", 2000.0, agent="billing", live_at=999.0)
    renewed = await stores.catalog.instance("a1")
    assert renewed is not None and renewed.lease_expires_at == 2000.0


async def test_expiry_queries_and_extension(stores: Stores) -> None:
    await stores.catalog.upsert(_instance("early", lease=100.0))
    await stores.catalog.upsert(_instance("late", lease=300.0))
    assert await stores.leases.earliest_expiry() == 100.0
    assert await stores.leases.expired(now=100.0) == ["early"]
    assert await stores.leases.expired(now=99.9) == []
    assert await stores.leases.extend_all(until=200.0) == 1
    assert await stores.leases.expired(now=250.0) == ["early"]
    late = await stores.catalog.instance("late")
    assert late is not None and late.lease_expires_at == 300.0


async def test_refuses_a_database_from_a_newer_schema(tmp_path: Path) -> None:
    await (await open_sqlite(tmp_path, event_log_retention=10)).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(
        StoreError, match=f"schema version 99, newer than this registry understands \\({SCHEMA_VERSION}\\)"
    ):
        await open_sqlite(tmp_path, event_log_retention=10)
    # The refused open released its lock: once fixed, the database opens again.
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.commit()
    db.close()
    await (await open_sqlite(tmp_path, event_log_retention=10)).close()


def test_the_schema_version_counts_the_named_steps() -> None:
    assert SCHEMA_VERSION == len(STEPS) and all(step.name for step in STEPS)
    assert len({step.name for step in STEPS}) == len(STEPS)


def test_only_the_steps_not_run_yet_run_and_a_failing_step_changes_nothing(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "steps.db", isolation_level=None)
    first = (Step("one", "CREATE TABLE a (x INTEGER);"), Step("two", "CREATE TABLE b (x INTEGER);"))
    migrate(db, tmp_path, first)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    migrate(db, tmp_path, first)  # nothing to run: creating a again would fail
    broken = (*first, Step("three", "CREATE TABLE c (x INTEGER);"), Step("four", "CREATE TABLE a (x INTEGER);"))
    with pytest.raises(StoreError, match="from schema version 2"):
        migrate(db, tmp_path, broken)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'c'").fetchone()[0] == 0


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


async def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    old = _instance("a1")
    body = {k: v for k, v in asdict(old).items() if k not in ("lease_expires_at", "svid_expires_at")}
    event_body = {**body, "lease_expires_at": old.lease_expires_at}
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript(_V1_SCHEMA)
    db.execute("INSERT INTO instances VALUES ('a1', 'billing', ?, ?)", (old.lease_expires_at, json.dumps(body)))
    db.execute("INSERT INTO events VALUES (1, 'a1', 'upserted', ?, NULL)", (json.dumps(event_body),))
    db.commit()
    db.close()
    stores = await open_sqlite(tmp_path, event_log_retention=10)
    try:
        assert await stores.catalog.instance("a1") == old and old.svid_expires_at == 0.0
        assert await stores.catalog.events_after(0) == [Upserted(revision=1, instance=old)]
        assert await stores.join_tokens.get("none") is None
        assert await stores.leases.set_lease("a1", 2000.0, svid_expires_at=3000.0)
        assert await stores.catalog.instance("a1") == replace(old, lease_expires_at=2000.0, svid_expires_at=3000.0)
        assert (await stores.catalog.upsert(_instance("b2"))).revision == 2  # continues from the stored revision
    finally:
        await stores.close()
    assert sqlite3.connect(tmp_path / DB_NAME).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_an_unusable_data_dir_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the registry data directory"):
        Database.open(blocker / "data")


async def test_the_audit_log_pages_newest_first_by_id(stores: Stores) -> None:
    for n in range(5):
        await stores.audit.append(AuditEntry(at=1000.0 + n, actor="operator:x", action="kill", target=f"agent a{n}"))
    first = await stores.audit.before(0, 2)
    assert [e.target for e in first] == ["agent a4", "agent a3"]
    second = await stores.audit.before(first[-1].id, 2)
    assert [e.target for e in second] == ["agent a2", "agent a1"]
    assert [e.target for e in await stores.audit.before(second[-1].id, 2)] == ["agent a0"]


async def test_add_all_adds_in_order_in_one_go_and_skips_ids_taken(stores: Stores) -> None:
    await stores.catalog.upsert(_instance("a1"))
    added = await stores.catalog.add_all([_instance("b2"), _instance("a1"), _instance("c3"), _instance("b2")])
    assert [None if a is None else (a.revision, a.instance.instance_id) for a in added] == [
        (2, "b2"),
        None,
        (3, "c3"),
        None,
    ]
    assert await stores.catalog.revision() == 3
    logged = await stores.catalog.events_after(1) or []
    assert [(e.revision, e.instance.instance_id) for e in logged if isinstance(e, Upserted)] == [(2, "b2"), (3, "c3")]
    assert [i.instance_id for i in (await stores.catalog.snapshot()).instances] == ["a1", "b2", "c3"]
