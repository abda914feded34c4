"""The sidecar's receipt spool: its hash chain, on disk, until the registry holds it.

SQLite in `<data-dir>/receipts/spool.db` (directory 0700, files 0600), WAL mode. `append` is
the one place the chain grows: it gives the receipt the next seq and the previous hash,
hashes it (meshwarden.receipt_hash) and inserts it, all in one synchronous step on the event
loop thread, so receipts are chained in the order calls end and nothing runs in between. It
runs before the reply leaves the sidecar; one INSERT in autocommit into a table keyed by rowid alone (no other index: it is the
cheapest insert SQLite has, 15 µs of CPU against 22 µs keyed by (instance id, seq)).

What survives what, by `--receipt-sync`:
- `normal` (default): SQLite's synchronous=NORMAL. A commit is in the WAL file, in the OS's
  page cache, when `append` returns: a killed or crashed sidecar (kill -9) loses nothing; a
  power loss or kernel crash may lose the receipts of the last moments before it.
- `full`: synchronous=FULL, the WAL is fsynced at every commit: nothing is lost to a power
  loss either, at the price of one fsync per call at each sidecar (milliseconds on a disk
  without a write cache).

The chain is keyed by the sidecar's instance id. A sidecar restarted with the same
`--instance-id` continues its chain; one that gets a new id starts a new chain at seq 1, and
the receipts of the old chain still in the spool are shipped under their own id.

Shipping (sidecar.receipt_shipper) reads through `SpoolReader`, a connection of its own used
from a worker thread, so reading a batch and checkpointing the WAL never hold the event loop
(WAL lets the reader and the writer work at once; a PASSIVE checkpoint never waits and never
makes the writer wait). Only the writer writes: pruning acknowledged receipts is `prune`, on
the loop thread like `append` (a few ms for a batch), so an append never waits on a lock
another connection holds; the writer's busy timeout is 0, and a lock it meets anyway is an
error that is logged, never a stalled loop. The writer does not checkpoint by itself
(wal_autocheckpoint=0): the shipper does it, now and then (sidecar.receipt_shipper says how
often, and why not more).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from meshwarden.private_data import private_sqlite
from meshwarden.receipt_hash import receipt_hash
from meshwarden.secure_files import ensure_private_dir
from meshwarden.sidecar.spool_backlog import Backlog
from meshwarden.v1 import receipts_pb2

log = logging.getLogger(__name__)

SPOOL_DIR: Final = "receipts"
SPOOL_FILE: Final = "spool.db"
READER_BUSY_TIMEOUT_MS: Final = 5000  # the shipper's thread may wait; the loop's writer never does
Sync = Literal["normal", "full"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS receipts (
    id INTEGER PRIMARY KEY,
    instance_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS acknowledged (
    instance_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
"""


class SpoolError(Exception):
    """The spool cannot be opened or written; says which file and why."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Receipts of one chain, in seq order, as stored (encoded): what one ShipReceipts sends."""

    instance_id: str
    bodies: tuple[bytes, ...]
    first_seq: int
    last_seq: int
    last_id: int  # the spool's row id of the last one


def spool_path(data_dir: Path) -> Path:
    return data_dir / SPOOL_DIR / SPOOL_FILE


def _connect(path: Path, sync: Sync, *, writer: bool) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=writer)
    db.execute(f"PRAGMA busy_timeout={0 if writer else READER_BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={sync.upper()}")
    if writer:
        db.execute("PRAGMA wal_autocheckpoint=0")  # the shipper checkpoints, off the loop thread
    return db


class ReceiptSpool:
    """The writer: owns the chain head; used on the event loop thread only."""

    def __init__(self, db: sqlite3.Connection, path: Path, instance_id: str, spiffe_id: str) -> None:
        self._db, self._path = db, path
        self.instance_id, self.spiffe_id = instance_id, spiffe_id
        self.head_seq, self.head_hash = _head(db, instance_id)
        self.appended = 0  # since start; the shipper compares it with what it shipped
        # Why new calls are refused (sidecar.spool_backlog), or None; set after each shipping round.
        self.full_reason: str | None = None

    @classmethod
    def open(cls, data_dir: Path, *, instance_id: str, spiffe_id: str, sync: Sync = "normal") -> ReceiptSpool:
        directory = ensure_private_dir(data_dir / SPOOL_DIR)
        path = directory / SPOOL_FILE
        try:
            private_sqlite(path)  # 0600 before SQLite opens it, and an older spool's files tightened
            db = _connect(path, sync, writer=True)
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(f"cannot open the receipt spool {path}: {exc}") from exc
        spool = cls(db, path, instance_id, spiffe_id)
        log.info(
            "receipt spool %s: chain %s at seq %d, %d receipt(s) waiting to be shipped (sync %s)",
            path,
            instance_id,
            spool.head_seq,
            spool.pending(),
            sync,
        )
        return spool

    @property
    def path(self) -> Path:
        return self._path

    def append(self, receipt: receipts_pb2.Receipt) -> receipts_pb2.Receipt:
        """Chains `receipt` (fills the sidecar's ids, seq, prev_hash and hash) and stores it;
        on return it is in the spool. Raises SpoolError when it cannot be written."""
        receipt.sidecar_instance_id, receipt.sidecar_spiffe_id = self.instance_id, self.spiffe_id
        receipt.seq, receipt.prev_hash = self.head_seq + 1, self.head_hash
        receipt.hash = receipt_hash(receipt)
        try:
            self._db.execute(
                "INSERT INTO receipts (instance_id, seq, hash, body) VALUES (?, ?, ?, ?)",
                (self.instance_id, receipt.seq, receipt.hash, receipt.SerializeToString(deterministic=True)),
            )
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot write receipt {receipt.seq} to {self._path}: {exc}") from exc
        self.head_seq, self.head_hash = receipt.seq, receipt.hash
        self.appended += 1
        return receipt

    def prune(self, batch: Batch, seq: int) -> int:
        """The registry holds `batch`'s chain up to `seq`: delete the batch's receipts up to
        there, keeping the last one's hash. Returns how many were deleted. SpoolError when the
        spool cannot be written (the receipts stay, and are shipped and pruned again)."""
        bounds = (batch.instance_id, seq, batch.last_id)
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot prune acknowledged receipts from {self._path}: {exc}") from exc
        try:
            last = self._db.execute(
                "SELECT seq, hash FROM receipts WHERE instance_id = ? AND seq <= ? AND id <= ? ORDER BY id DESC LIMIT 1",
                bounds,
            ).fetchone()
            deleted = self._db.execute(
                "DELETE FROM receipts WHERE instance_id = ? AND seq <= ? AND id <= ?", bounds
            ).rowcount
            if last is not None:
                self._db.execute(
                    "INSERT INTO acknowledged (instance_id, seq, hash) VALUES (?, ?, ?) ON CONFLICT (instance_id) "
                    "DO UPDATE SET seq = excluded.seq, hash = excluded.hash WHERE excluded.seq > acknowledged.seq",
                    (batch.instance_id, last[0], last[1]),
                )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise SpoolError(f"cannot prune acknowledged receipts from {self._path}: {exc}") from exc
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return int(deleted)

    def replace(self, instance_id: str, seq: int, replacement: receipts_pb2.Receipt) -> receipts_pb2.Receipt:
        """Puts `replacement` in place of receipt `seq` of the chain (a quarantined receipt:
        sidecar.receipt_quarantine), linked where the original was, and links every later
        receipt of the chain again, on the event loop like `append` so that no append runs in
        between (a rare event; about 50 µs per later receipt). Returns the replacement as stored."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot quarantine receipt {seq} in {self._path}: {exc}") from exc
        try:
            rows = self._db.execute(
                "SELECT id, seq, body FROM receipts WHERE instance_id = ? AND seq >= ? ORDER BY id", (instance_id, seq)
            ).fetchall()
            if not rows or rows[0][1] != seq:
                raise SpoolError(f"receipt {seq} of {instance_id} is not in the spool {self._path}")
            original = receipts_pb2.Receipt()
            original.ParseFromString(rows[0][2])
            replacement.seq, replacement.prev_hash = seq, original.prev_hash
            receipt, previous = replacement, ""
            for index, (row_id, _seq, body) in enumerate(rows):
                if index:
                    receipt = receipts_pb2.Receipt()
                    receipt.ParseFromString(body)
                    receipt.prev_hash = previous
                receipt.hash = receipt_hash(receipt)
                self._db.execute(
                    "UPDATE receipts SET hash = ?, body = ? WHERE id = ?",
                    (receipt.hash, receipt.SerializeToString(deterministic=True), row_id),
                )
                previous = receipt.hash
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise SpoolError(f"cannot quarantine receipt {seq} in {self._path}: {exc}") from exc
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        if instance_id == self.instance_id:
            self.head_hash = previous
        return replacement

    def pending(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class SpoolReader:
    """The shipper's side: batches and checkpoints, read-only. One task uses it, one call at a
    time, from worker threads (asyncio.to_thread)."""

    def __init__(self, path: Path, sync: Sync = "normal") -> None:
        self._path = path
        try:
            self._db = _connect(path, sync, writer=False)
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot open the receipt spool {path}: {exc}") from exc

    def chains(self) -> list[str]:
        """The chains with receipts still in the spool (more than one after a restart under a
        new instance id)."""
        return [str(chain) for (chain,) in self._db.execute("SELECT DISTINCT instance_id FROM receipts")]

    def batch(self, instance_id: str, max_receipts: int, max_bytes: int) -> Batch | None:
        """The oldest receipts of a chain still in the spool, at most `max_receipts` and
        `max_bytes` of them (but at least one); None when none is left."""
        rows = self._db.execute(
            "SELECT id, seq, body FROM receipts WHERE instance_id = ? ORDER BY id LIMIT ?", (instance_id, max_receipts)
        ).fetchall()
        if not rows:
            return None
        taken: list[tuple[int, int, bytes]] = []
        size = 0
        for row in rows:
            if taken and size + len(row[2]) > max_bytes:
                break
            taken.append(row)
            size += len(row[2])
        return Batch(instance_id, tuple(r[2] for r in taken), taken[0][1], taken[-1][1], taken[-1][0])

    def backlog(self) -> Backlog:
        """What the registry has not acknowledged yet: how many receipts, how many bytes, and
        when the oldest one's call started (a full scan of the spool: call it in a worker thread)."""
        count, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM receipts").fetchone()
        row = self._db.execute("SELECT body FROM receipts ORDER BY id LIMIT 1").fetchone()
        oldest: float | None = None
        if row is not None:
            receipt = receipts_pb2.Receipt()
            receipt.ParseFromString(row[0])
            oldest = receipt.started_at.ToNanoseconds() / 1e9
        return Backlog(int(count), int(size), oldest)

    def checkpoint(self) -> None:
        """Moves the WAL into the database file while nothing else writes (PASSIVE never waits)."""
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def pending(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def _head(db: sqlite3.Connection, instance_id: str) -> tuple[int, str]:
    """Where this instance's chain ends: its newest receipt in the spool, else the newest the
    registry acknowledged (and the spool deleted), else nothing yet (seq 0)."""
    row = db.execute(
        "SELECT seq, hash FROM receipts WHERE instance_id = ? ORDER BY id DESC LIMIT 1", (instance_id,)
    ).fetchone()
    if row is None:
        row = db.execute("SELECT seq, hash FROM acknowledged WHERE instance_id = ?", (instance_id,)).fetchone()
    return (int(row[0]), str(row[1])) if row is not None else (0, "")
