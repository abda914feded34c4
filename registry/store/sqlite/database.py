"""One SQLite database file, worked on by two threads so that no query holds an event loop.

A writer thread owns the one connection that writes: every write is one `BEGIN IMMEDIATE ...
COMMIT` on it, so writes are serialized in the order they were asked for, and the commit is
done before the awaiting coroutine resumes. A reader thread owns a second, query-only
connection: in WAL mode it reads the last committed state while the writer writes, so a long
read (a day of receipts) delays no registration, and a write waits for no read.

`synchronous=NORMAL` in WAL mode loses nothing when the process crashes; after an OS crash
the last few commits may be lost, which the registry tolerates (sidecars re-register on
NOT_FOUND, watchers ahead of the revision get a snapshot). Writes the registry acknowledges
to someone who then forgets the data (receipts a sidecar prunes from its spool) are
`durable`: fsync'd before they return.

Small writes that come in bursts (task leases and reports) use `write_batched`: what queued
while the writer thread was busy runs as one transaction, each work in a savepoint of its own,
so a thousand reports a second cost tens of commits, not a thousand, and a failing work undoes
only itself.

A lock file (`registry.lock`, flock) keeps a second registry process off the same data dir.
The database and its WAL files are created readable by their owner only (0600).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO, TypeVar

from meshwarden.private_data import private_sqlite, tighten_dir
from meshwarden.registry.errors import StoreError
from meshwarden.registry.store.sqlite.migrations import migrate

log = logging.getLogger(__name__)

DB_NAME: Final = "registry.db"
LOCK_NAME: Final = "registry.lock"

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]


@dataclass(frozen=True, slots=True)
class _Queued:
    work: Work[Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


class Database:
    """Opened with `Database.open(data_dir)` (blocking: run it before serving, or in a thread)."""

    def __init__(self, path: Path, writer: sqlite3.Connection, reader: sqlite3.Connection, lock: TextIO) -> None:
        self._path, self._writer, self._reader, self._lock = path, writer, reader, lock
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="registry-db-writer")
        # Held around every use of the writer connection by the writer thread.
        self.writer_lock = threading.RLock()
        self._read_thread = ThreadPoolExecutor(1, thread_name_prefix="registry-db-reader")
        self._batch: list[_Queued] = []  # write_batched's queue, drained by the writer thread
        self._batch_lock = threading.Lock()
        self._batch_scheduled = False

    @classmethod
    def open(cls, data_dir: Path) -> Database:
        """Creates `data_dir` (0700) and the database (0600) if needed, locks the directory and
        brings the schema up to date (registry.store.sqlite.migrations)."""
        _make_private_dir(data_dir)
        lock = _lock(data_dir / LOCK_NAME)
        path = data_dir / DB_NAME
        opened: list[sqlite3.Connection] = []
        try:
            _create_private(path)
            writer = _connect(path, opened)
            writer.execute("PRAGMA journal_mode=WAL")
            writer.execute("PRAGMA synchronous=NORMAL")
            migrate(writer, path)
            reader = _connect(path, opened)
            reader.execute("PRAGMA query_only=1")
            return cls(path, writer, reader, lock)
        except BaseException as exc:
            for db in opened:
                db.close()
            lock.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open the registry database {path}: {exc}") from exc
            raise

    @property
    def path(self) -> Path:
        return self._path

    async def write(self, work: Work[T], *, durable: bool = False) -> T:
        """Runs `work` in one write transaction on the writer thread; SQLite's errors become
        StoreError. A caller cancelled meanwhile may leave the work done or not done: callers
        that must act on what they wrote (publish it) shield the write."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._write_thread, self._in_write_transaction, work, durable)

    async def write_batched(self, work: Work[T]) -> T:
        """`write` for small frequent writes: works queued while the writer thread is busy run
        together in one transaction, each in a savepoint, so each one's effect and errors are
        its own; each caller resumes once that transaction committed (a failed commit fails
        them all with StoreError). Never durable: this is for state a crash may roll back."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._batch_lock:
            self._batch.append(_Queued(work, future, loop))
            drain = not self._batch_scheduled
            self._batch_scheduled = True
        if drain:
            self._write_thread.submit(self._write_batch)
        return await future

    async def read(self, work: Work[T]) -> T:
        """Runs `work` in one read transaction (a consistent view) on the reader thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_thread, self._in_read_transaction, work)

    async def read_apart(self, work: Work[T]) -> T:
        """`read` on a connection and thread of its own, for reads that take seconds (verifying
        every receipt chain, a month of receipts): the reader thread stays free meanwhile."""
        return await asyncio.to_thread(self._read_apart, work)

    def write_now(self, work: Work[T]) -> T:
        """`write` on the calling thread, before any coroutine uses the database (start-up)."""
        return self._write_thread.submit(self._in_write_transaction, work, False).result()

    def close(self) -> None:
        """Waits for queued work, then closes both connections and releases the lock."""
        self._write_thread.shutdown(wait=True)
        self._read_thread.shutdown(wait=True)
        self._reader.close()
        self._writer.close()
        self._lock.close()  # releases the flock

    def _in_write_transaction(self, work: Work[T], durable: bool) -> T:
        with self.writer_lock:
            return self._write_locked(work, durable)

    def _write_locked(self, work: Work[T], durable: bool) -> T:
        db = self._writer
        try:
            if durable:
                db.execute("PRAGMA synchronous=FULL")
            try:
                with _transaction(db, "BEGIN IMMEDIATE"):
                    return work(db)
            finally:
                if durable:
                    db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"{self._path}: write failed: {exc}") from exc

    def _write_batch(self) -> None:
        with self._batch_lock:
            batch, self._batch, self._batch_scheduled = self._batch, [], False
        outcomes: list[tuple[_Queued, Any, BaseException | None]] = []
        with self.writer_lock:
            db = self._writer
            try:
                with _transaction(db, "BEGIN IMMEDIATE"):
                    for queued in batch:
                        outcomes.append(_in_savepoint(db, queued))
            except sqlite3.Error as exc:  # the commit failed: nothing of the batch was written
                failed = StoreError(f"{self._path}: write failed: {exc}")
                outcomes = [(queued, None, failed) for queued in batch]
        for loop in {queued.loop for queued in batch}:
            loop.call_soon_threadsafe(_settle, [o for o in outcomes if o[0].loop is loop])

    def _read_apart(self, work: Work[T]) -> T:
        try:
            db = sqlite3.connect(f"{self._path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self._path} to read: {exc}") from exc
        try:
            with _transaction(db, "BEGIN"):
                return work(db)
        except sqlite3.Error as exc:
            raise StoreError(f"{self._path}: read failed: {exc}") from exc
        finally:
            db.close()

    def _in_read_transaction(self, work: Work[T]) -> T:
        try:
            with _transaction(self._reader, "BEGIN"):
                return work(self._reader)
        except sqlite3.Error as exc:
            raise StoreError(f"{self._path}: read failed: {exc}") from exc


def _in_savepoint(db: sqlite3.Connection, queued: _Queued) -> tuple[_Queued, Any, BaseException | None]:
    """Runs one work of a batch; its failure rolls back its own writes only."""
    db.execute("SAVEPOINT work")
    try:
        result = queued.work(db)
    except Exception as exc:  # noqa: BLE001 -- handed to the work's own caller, not swallowed
        db.execute("ROLLBACK TO work")
        db.execute("RELEASE work")
        if isinstance(exc, sqlite3.Error):
            return queued, None, StoreError(f"write failed: {exc}")
        return queued, None, exc
    db.execute("RELEASE work")
    return queued, result, None


def _settle(outcomes: list[tuple[_Queued, Any, BaseException | None]]) -> None:
    """On the callers' loop: each caller gets its result or its error (unless it gave up)."""
    for queued, result, error in outcomes:
        if queued.future.done():
            continue
        if error is not None:
            queued.future.set_exception(error)
        else:
            queued.future.set_result(result)


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection, begin: str) -> Iterator[None]:
    db.execute(begin)
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _connect(path: Path, opened: list[sqlite3.Connection]) -> sqlite3.Connection:
    # Each connection is used by its own thread only, after being opened here.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    opened.append(db)
    return db


def _create_private(path: Path) -> None:
    """Creates the database file 0600 before SQLite does (its WAL and shm files copy the mode),
    or tightens an existing one and its WAL and shm files (meshwarden.private_data)."""
    try:
        private_sqlite(path)
    except OSError as exc:
        raise StoreError(f"cannot create the registry database {path}: {exc.strerror}") from exc


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
