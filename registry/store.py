"""The registry's durable state: instances with their leases, and the catalog event log.

SQLite in `<data_dir>/registry.db`, WAL mode. One change to the catalog (an instance added,
replaced or removed) is one transaction that writes the instance row, appends the event at
its revision, stores the new revision and trims the log to its retention, so the revision on
disk always matches the catalog on disk.

Why synchronous calls on the event loop thread, and no worker thread: every statement here
touches one row or one small index range and takes well under a millisecond with WAL;
a thread hop would cost about as much as the work, and running on the loop thread makes each
catalog change atomic with respect to watchers (nothing else runs between a commit and the
publication of its event). `synchronous=NORMAL` in WAL mode loses nothing when the process
crashes; after an OS crash the last few commits may be lost, which the registry tolerates:
sidecars re-register on NOT_FOUND and watchers ahead of the revision get a snapshot.

A lock file (`registry.lock`, flock) keeps a second registry process off the same data dir.
About 300 lines because the schema and the row codecs stay next to the only queries using them.
The schema of the join tokens is here too (one place for every table and migration); their
queries live in registry.join_tokens, through `transaction()` and `query()`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final, TextIO

from meshwarden.private_data import private_sqlite, tighten_dir
from meshwarden.registry.errors import StoreError
from meshwarden.registry.model import (
    DEREGISTERED,
    LEASE_EXPIRED,
    Capability,
    CatalogEvent,
    Instance,
    Removed,
    Upserted,
)

log = logging.getLogger(__name__)

DB_NAME: Final = "registry.db"
LOCK_NAME: Final = "registry.lock"
SCHEMA_VERSION: Final = 10

_JOIN_TOKENS: Final = """
CREATE TABLE IF NOT EXISTS join_tokens (
    token_id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    agent TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL
);
"""

_BUNDLES: Final = """
CREATE TABLE IF NOT EXISTS policy_bundles (
    revision INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    artifact BLOB NOT NULL,
    pushed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS bundle_status (
    instance_id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    active_revision INTEGER NOT NULL,
    active_digest TEXT NOT NULL,
    refused_revision INTEGER NOT NULL,
    refusal TEXT NOT NULL,
    reported_at REAL NOT NULL
);
"""

_ROUTES: Final = """
CREATE TABLE IF NOT EXISTS routes (
    capability TEXT PRIMARY KEY,
    weights TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""

# Receipts (registry.receipt_store): each sidecar's hash chain as shipped, and the head (seq,
# hash) it last reported. `body` is the Receipt as shipped and is what the hash covers; the
# other columns copy fields of it for queries, and `receipts verify` checks that they agree.
_RECEIPTS: Final = """
CREATE TABLE IF NOT EXISTS receipt_chains (
    sidecar_instance_id TEXT PRIMARY KEY,
    sidecar_spiffe_id TEXT NOT NULL,
    head_seq INTEGER NOT NULL,
    head_hash TEXT NOT NULL,
    shipped_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS receipts (
    sidecar_instance_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
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
    cost_micro_usd INTEGER NOT NULL,
    started_at REAL NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (sidecar_instance_id, seq)
);
CREATE INDEX IF NOT EXISTS receipts_by_session ON receipts (session_id, started_at);
CREATE INDEX IF NOT EXISTS receipts_by_start ON receipts (started_at);
"""

# The signed head of each receipt chain, as its sidecar last signed it (registry.receipt_signatures).
_SIGNED_HEADS: Final = """
CREATE TABLE IF NOT EXISTS receipt_head_signatures (
    sidecar_instance_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    signer_spiffe_id TEXT NOT NULL,
    signed_head BLOB NOT NULL
);
"""

# One row per session that reported how it ended; the first report stands (registry.outcomes).
_OUTCOMES: Final = """
CREATE TABLE IF NOT EXISTS session_outcomes (
    session_id TEXT PRIMARY KEY,
    outcome TEXT NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'abandoned')),
    detail TEXT NOT NULL,
    reported_by TEXT NOT NULL,
    reported_at REAL NOT NULL
);
"""

# Operator controls (registry.controls, registry.audit): kill switches, isolations, and the
# audit log of operator writes.
_CONTROLS: Final = """
CREATE TABLE IF NOT EXISTS kill_switches (
    id TEXT PRIMARY KEY,
    scope_kind TEXT NOT NULL,
    scope_value TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL
);
CREATE TABLE IF NOT EXISTS isolations (
    agent TEXT NOT NULL,
    version TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (agent, version)
);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    claimed_user TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_by_time ON audit_log (at);
INSERT OR IGNORE INTO meta (key, value) VALUES ('controls_revision', 0);
"""

# Tasks (registry.task_store): each task with its current lease and fencing token, and every
# transition of its state machine.
_TASKS: Final = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    input_json TEXT NOT NULL,
    idempotency_key TEXT,
    state INTEGER NOT NULL,
    holder_instance_id TEXT NOT NULL,
    holder_agent TEXT NOT NULL,
    fencing_token INTEGER NOT NULL,
    lease_expires_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    lease_ttl_s REAL NOT NULL,
    result_json TEXT NOT NULL,
    error TEXT NOT NULL,
    submitted_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS tasks_by_idempotency_key ON tasks (idempotency_key);
CREATE INDEX IF NOT EXISTS tasks_queued ON tasks (state, kind, created_at);
CREATE INDEX IF NOT EXISTS tasks_by_lease ON tasks (state, lease_expires_at);
CREATE TABLE IF NOT EXISTS task_transitions (
    task_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    from_state INTEGER NOT NULL,
    to_state INTEGER NOT NULL,
    executor TEXT NOT NULL,
    fencing_token INTEGER NOT NULL,
    lease_expires_at REAL NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
);
"""

# Approvals (registry.approval_store): a person's decision on one call's exact arguments.
_APPROVALS: Final = """
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'used')),
    agent TEXT NOT NULL,
    spiffe_id TEXT NOT NULL,
    call_kind TEXT NOT NULL,
    capability TEXT NOT NULL,
    arguments_sha256 TEXT NOT NULL,
    body TEXT NOT NULL,
    requested_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    decided_at REAL,
    decided_by TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    used_at REAL,
    used_by_call_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS approvals_by_call ON approvals (agent, capability, arguments_sha256, state);
CREATE INDEX IF NOT EXISTS approvals_by_state ON approvals (state, expires_at);
"""

_SCHEMA: Final = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    lease_expires_at REAL NOT NULL,
    svid_expires_at REAL NOT NULL DEFAULT 0,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_by_lease ON instances (lease_expires_at);
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY,
    instance_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('upserted', 'removed')),
    body TEXT,
    reason TEXT
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0);
"""
    + _JOIN_TOKENS
    + _BUNDLES
    + _ROUTES
    + _RECEIPTS
    + _OUTCOMES
    + _CONTROLS
    + _APPROVALS
    + _TASKS
    + _SIGNED_HEADS
)

# Version 1 -> 2 (identity): the SVID expiry of each instance, and join tokens.
_UPGRADE_TO_2: Final = "ALTER TABLE instances ADD COLUMN svid_expires_at REAL NOT NULL DEFAULT 0;" + _JOIN_TOKENS

Row = tuple[Any, ...]


class Store:
    """Opened with `Store.open(data_dir, event_log_retention=...)`; close it with `close()`."""

    def __init__(self, db: sqlite3.Connection, lock_file: TextIO, path: Path, retention: int) -> None:
        self._db, self._lock_file, self._path, self._retention = db, lock_file, path, retention
        self._revision = self._read_revision()

    @classmethod
    def open(cls, data_dir: Path, *, event_log_retention: int) -> Store:
        """Creates `data_dir` (mode 0700) and the database if needed, and locks the directory."""
        _make_private_dir(data_dir)
        lock_file = _lock(data_dir / LOCK_NAME)
        path = data_dir / DB_NAME
        db: sqlite3.Connection | None = None
        try:
            private_sqlite(path)  # 0600 before SQLite opens it: its WAL and SHM files take its mode
            db = sqlite3.connect(path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            _migrate(db, path)
            store = cls(db, lock_file, path, event_log_retention)
        except BaseException as exc:
            if db is not None:
                db.close()
            lock_file.close()
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise StoreError(f"cannot open the registry database {path}: {exc}") from exc
            raise
        log.info("opened %s at revision %d", path, store.revision)
        return store

    def close(self) -> None:
        self._db.close()
        self._lock_file.close()  # releases the flock

    @property
    def path(self) -> Path:
        return self._path

    @property
    def revision(self) -> int:
        """The revision of the last committed catalog change; 0 when none was ever made."""
        return self._revision

    def instance(self, instance_id: str) -> Instance | None:
        row = self._db.execute(
            "SELECT body, lease_expires_at, svid_expires_at FROM instances WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        return None if row is None else _instance_from_row(row[0], row[1], row[2])

    def instances(self) -> list[Instance]:
        rows = self._db.execute(
            "SELECT body, lease_expires_at, svid_expires_at FROM instances ORDER BY agent, instance_id"
        ).fetchall()
        return [_instance_from_row(body, lease, svid) for body, lease, svid in rows]

    def commit(self, event: CatalogEvent) -> None:
        """Applies one catalog change and appends its event, atomically.

        `event.revision` must be exactly one more than `revision`: revisions have no gaps, so
        "the log holds every event after N" can be checked from the oldest revision kept.
        """
        if event.revision != self._revision + 1:
            raise ValueError(f"event revision {event.revision} does not follow store revision {self._revision}")
        with self._transaction():
            if isinstance(event, Upserted):
                body = _instance_body(event.instance)
                self._db.execute(
                    "INSERT OR REPLACE INTO instances (instance_id, agent, lease_expires_at, svid_expires_at, body) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        event.instance.instance_id,
                        event.instance.agent,
                        event.instance.lease_expires_at,
                        event.instance.svid_expires_at,
                        body,
                    ),
                )
                self._db.execute(
                    "INSERT INTO events (revision, instance_id, kind, body) VALUES (?, ?, 'upserted', ?)",
                    (event.revision, event.instance.instance_id, _instance_body(event.instance, with_lease=True)),
                )
            else:
                self._db.execute("DELETE FROM instances WHERE instance_id = ?", (event.instance_id,))
                self._db.execute(
                    "INSERT INTO events (revision, instance_id, kind, reason) VALUES (?, ?, 'removed', ?)",
                    (event.revision, event.instance_id, event.reason),
                )
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'revision'", (event.revision,))
            self._db.execute("DELETE FROM events WHERE revision <= ?", (event.revision - self._retention,))
        self._revision = event.revision

    def set_lease(self, instance_id: str, lease_expires_at: float, svid_expires_at: float | None = None) -> bool:
        """Moves one lease's expiry (and the SVID expiry, when given); False when the instance
        is not in the catalog.

        Not a catalog change: it bumps no revision and appends no event (see registry.catalog).
        """
        with self._transaction():
            if svid_expires_at is None:
                cursor = self._db.execute(
                    "UPDATE instances SET lease_expires_at = ? WHERE instance_id = ?", (lease_expires_at, instance_id)
                )
            else:
                cursor = self._db.execute(
                    "UPDATE instances SET lease_expires_at = ?, svid_expires_at = ? WHERE instance_id = ?",
                    (lease_expires_at, svid_expires_at, instance_id),
                )
        return cursor.rowcount == 1

    def extend_all_leases(self, until: float) -> int:
        """Moves every lease that expires before `until` to `until`; returns how many moved."""
        with self._transaction():
            cursor = self._db.execute(
                "UPDATE instances SET lease_expires_at = ? WHERE lease_expires_at < ?", (until, until)
            )
        return cursor.rowcount

    def expired_ids(self, now: float) -> list[str]:
        rows = self._db.execute(
            "SELECT instance_id FROM instances WHERE lease_expires_at <= ? ORDER BY lease_expires_at", (now,)
        ).fetchall()
        return [instance_id for (instance_id,) in rows]

    def earliest_lease_expiry(self) -> float | None:
        value = self._db.execute("SELECT MIN(lease_expires_at) FROM instances").fetchone()[0]
        return None if value is None else float(value)

    def events_after(self, revision: int) -> list[CatalogEvent] | None:
        """Every event after `revision`, oldest first; None when the log no longer holds them all
        (trimmed by retention) or `revision` is ahead of this store (e.g. the data dir was wiped)."""
        if revision > self._revision:
            return None
        if revision == self._revision:
            return []
        oldest = self.oldest_event_revision()
        if oldest is None or oldest > revision + 1:
            return None
        rows = self._db.execute(
            "SELECT revision, instance_id, kind, body, reason FROM events WHERE revision > ? ORDER BY revision",
            (revision,),
        ).fetchall()
        return [_event_from_row(*row) for row in rows]

    def oldest_event_revision(self) -> int | None:
        value = self._db.execute("SELECT MIN(revision) FROM events").fetchone()[0]
        return None if value is None else int(value)

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction for modules that own a table of their own (registry.join_tokens).

        `durable`: the commit is on disk (fsync) before this returns, so it survives a power
        loss too; for writes the registry acknowledges to someone who then forgets the data
        (receipts a sidecar prunes from its spool)."""
        if not durable:
            with self._transaction():
                yield self._db
            return
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            with self._transaction():
                yield self._db
        finally:
            self._db.execute("PRAGMA synchronous=NORMAL")

    def query(self, sql: str, parameters: tuple[object, ...] = ()) -> list[Row]:
        """The rows of one read-only statement, for modules that own a table of their own."""
        try:
            return list(self._db.execute(sql, parameters).fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"{self._path}: read failed: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT; rolls back on any error and reports SQLite's as StoreError."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StoreError(f"{self._path}: write failed: {exc}") from exc

    def _read_revision(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])


def _make_private_dir(data_dir: Path) -> None:
    """Creates the data dir readable by its owner only, or tightens an existing one: it holds
    who runs where in the mesh, receipts and the audit log (meshwarden.private_data)."""
    try:
        tighten_dir(data_dir)
    except OSError as exc:
        raise StoreError(f"cannot create the registry data directory {data_dir}: {exc.strerror}") from exc


def _lock(path: Path) -> TextIO:
    try:
        lock_file = path.open("a")
    except OSError as exc:
        raise StoreError(f"cannot open {path}: {exc.strerror}") from exc
    try:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        lock_file.close()
        raise StoreError(
            f"{path.parent} is in use by another registry process (lock {path} is held); "
            "stop it or choose another --data-dir"
        ) from exc
    return lock_file


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than this registry understands ({SCHEMA_VERSION}); "
            "run a newer meshwarden or use another --data-dir"
        )
    # Version 2 -> 3 (policy bundles): every pushed revision, and what each sidecar enforces.
    # Version 3 -> 4 (routes): weighted version routes by capability.
    # Version 4 -> 5 (receipts): receipt chains and their heads.
    # Version 5 -> 6 (outcomes): how each session ended, as its agents reported it.
    # Version 6 -> 7 (operator controls): kill switches, isolations, the audit log.
    # Version 7 -> 8 (approvals): a person's decision on one call's exact arguments.
    # Version 8 -> 9 (tasks): tasks with their leases and fencing tokens, and their transitions.
    # Version 9 -> 10 (signed receipt heads): each chain's head as its sidecar signed it.
    upgrades = {
        1: _UPGRADE_TO_2 + _BUNDLES + _ROUTES + _RECEIPTS + _OUTCOMES + _CONTROLS + _APPROVALS + _TASKS + _SIGNED_HEADS,
        2: _BUNDLES + _ROUTES + _RECEIPTS + _OUTCOMES + _CONTROLS + _APPROVALS + _TASKS + _SIGNED_HEADS,
        3: _ROUTES + _RECEIPTS + _OUTCOMES + _CONTROLS + _APPROVALS + _TASKS + _SIGNED_HEADS,
        4: _RECEIPTS + _OUTCOMES + _CONTROLS + _APPROVALS + _TASKS + _SIGNED_HEADS,
        5: _OUTCOMES + _CONTROLS + _APPROVALS + _TASKS + _SIGNED_HEADS,
        6: _CONTROLS + _APPROVALS + _TASKS + _SIGNED_HEADS,
        7: _APPROVALS + _TASKS + _SIGNED_HEADS,
        8: _TASKS + _SIGNED_HEADS,
        9: _SIGNED_HEADS,
    }
    steps = _SCHEMA if version == 0 else upgrades.get(version, "")
    db.executescript("BEGIN;" + steps + f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
    if 0 < version < SCHEMA_VERSION:
        log.info("upgraded %s from schema version %d to %d", path, version, SCHEMA_VERSION)


def _instance_body(instance: Instance, *, with_lease: bool = False) -> str:
    data = asdict(instance)
    if not with_lease:
        del data["lease_expires_at"]  # kept in their own columns: renewals update only those
        del data["svid_expires_at"]
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _instance_from_row(body: str, lease_expires_at: float, svid_expires_at: float) -> Instance:
    return _instance_from_json(json.loads(body), lease_expires_at, svid_expires_at)


def _instance_from_json(data: dict[str, object], lease_expires_at: float, svid_expires_at: float) -> Instance:
    capabilities = data["capabilities"]
    if not isinstance(capabilities, list):
        raise StoreError(f"corrupt instance record {data.get('instance_id')!r}: capabilities is not a list")
    return Instance(
        instance_id=str(data["instance_id"]),
        agent=str(data["agent"]),
        version=str(data["version"]),
        peer_address=str(data["peer_address"]),
        capabilities=tuple(Capability(**c) for c in capabilities),
        spiffe_id=str(data["spiffe_id"]),
        registered_at=_number(data["registered_at"]),
        lease_expires_at=float(lease_expires_at),
        svid_expires_at=float(svid_expires_at),
    )


def _number(value: object) -> float:
    if not isinstance(value, (int, float)):
        raise StoreError(f"corrupt record: expected a number, got {value!r}")
    return float(value)


def _event_from_row(revision: int, instance_id: str, kind: str, body: str | None, reason: str | None) -> CatalogEvent:
    if kind == "upserted":
        if body is None:
            raise StoreError(f"corrupt event at revision {revision}: upserted without an instance")
        data = json.loads(body)
        instance = _instance_from_json(
            data,
            _number(data["lease_expires_at"]),
            _number(data.get("svid_expires_at", 0.0)),  # absent before v2
        )
        return Upserted(revision=revision, instance=instance)
    if reason not in (DEREGISTERED, LEASE_EXPIRED):
        raise StoreError(f"corrupt event at revision {revision}: unknown removal reason {reason!r}")
    return Removed(revision=revision, instance_id=instance_id, reason=reason)
