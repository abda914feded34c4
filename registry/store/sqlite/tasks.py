"""Tasks in SQLite: every statement on the `tasks` and `task_transitions` tables, and nowhere else.

Changes run on the writer thread (registry.store.sqlite.database), each one transaction that
reads the row, applies the domain's `TaskChange` and writes what it returns; reads run on the
reader thread. A row is updated in place, setting only the columns that changed: SQLite
rewrites an index only when the UPDATE sets one of its columns, so a heartbeat touches the
lease index alone (measured: a third less writer-thread time per report than setting every
column).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, Final

from meshwarden.registry.errors import RegistryError, StoreError
from meshwarden.registry.store.sqlite.database import Database
from meshwarden.registry.store.task_records import StoredTask, TaskChange, TaskFilter, TaskTransition

_TASK_FIELDS: Final = tuple(f.name for f in fields(StoredTask))
_TASK_COLUMNS: Final = ", ".join(_TASK_FIELDS)
_INSERT_TASK: Final = (
    f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES ({', '.join('?' * len(_TASK_FIELDS))}) "
    "ON CONFLICT (idempotency_key) DO NOTHING"
)
_TRANSITION_FIELDS: Final = tuple(f.name for f in fields(TaskTransition))
_TRANSITION_COLUMNS: Final = ", ".join(_TRANSITION_FIELDS)
# seq is the task's next, taken in the same statement: (task_id, seq) is the primary key
_INSERT_TRANSITION: Final = (
    f"INSERT INTO task_transitions ({_TRANSITION_COLUMNS}) SELECT ?, COALESCE(MAX(seq), 0) + 1, "
    f"{', '.join('?' * (len(_TRANSITION_FIELDS) - 2))} FROM task_transitions WHERE task_id = ?"
)


class SqliteTasks:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, task: StoredTask, submitted: TaskTransition) -> tuple[StoredTask, bool]:
        return await self._db.write_batched(lambda db: _add(db, task, submitted))

    async def add_many(self, tasks: Sequence[tuple[StoredTask, TaskTransition]]) -> list[tuple[StoredTask, bool]]:
        return await self._db.write_batched(lambda db: [_add(db, task, submitted) for task, submitted in tasks])

    async def change_many(self, changes: Sequence[tuple[str, TaskChange]]) -> list[StoredTask | RegistryError | None]:
        def work(db: sqlite3.Connection) -> list[StoredTask | RegistryError | None]:
            results: list[StoredTask | RegistryError | None] = []
            for task_id, change in changes:
                task = _one(db, "id = ?", (task_id,))
                try:
                    results.append(None if task is None else _apply(db, task, change))
                except RegistryError as exc:  # raised by the change, before it wrote anything
                    results.append(exc)
            return results

        return await self._db.write_batched(work)

    async def lease_oldest(
        self, state: int, kinds: tuple[str, ...], change: TaskChange, limit: int
    ) -> list[StoredTask]:
        marks = ", ".join("?" * len(kinds))

        def work(db: sqlite3.Connection) -> list[StoredTask]:
            # tasks_queued (state, kind, created_at): one index range per kind
            rows = db.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE state = ? AND kind IN ({marks}) "
                "ORDER BY created_at, rowid LIMIT ?",
                (state, *kinds, limit),
            ).fetchall()
            return [_apply(db, _task(row), change) for row in rows]

        return await self._db.write_batched(work)

    async def change(self, task_id: str, change: TaskChange) -> StoredTask | None:
        def work(db: sqlite3.Connection) -> StoredTask | None:
            task = _one(db, "id = ?", (task_id,))
            return None if task is None else _apply(db, task, change)

        return await self._db.write_batched(work)

    async def lapse(self, held: tuple[int, ...], now: float, change: TaskChange) -> list[StoredTask]:
        marks = ", ".join("?" * len(held))

        def work(db: sqlite3.Connection) -> list[StoredTask]:
            rows = db.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE state IN ({marks}) AND lease_expires_at <= ? "
                "ORDER BY lease_expires_at",
                (*held, now),
            ).fetchall()
            return [_apply(db, _task(row), change) for row in rows]

        return await self._db.write_batched(work)

    async def extend_leases(self, held: tuple[int, ...], now: float) -> int:
        marks = ", ".join("?" * len(held))

        def work(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                f"UPDATE tasks SET lease_expires_at = MAX(lease_expires_at, ? + lease_ttl_s) WHERE state IN ({marks})",
                (now, *held),
            )
            return cursor.rowcount

        return await self._db.write(work)

    async def task(self, task_id: str) -> StoredTask | None:
        return await self._db.read(lambda db: _one(db, "id = ?", (task_id,)))

    async def timeline(self, task_id: str) -> list[TaskTransition]:
        def work(db: sqlite3.Connection) -> list[TaskTransition]:
            rows = db.execute(
                f"SELECT {_TRANSITION_COLUMNS} FROM task_transitions WHERE task_id = ? ORDER BY seq", (task_id,)
            ).fetchall()
            return [TaskTransition(**dict(zip(_TRANSITION_FIELDS, row, strict=True))) for row in rows]

        return await self._db.read(work)

    async def find(self, where: TaskFilter) -> list[StoredTask]:
        clauses, parameters = _filter_sql(where)

        def work(db: sqlite3.Connection) -> list[StoredTask]:
            rows = db.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks{clauses} ORDER BY created_at DESC, id LIMIT ?",
                (*parameters, where.limit),
            ).fetchall()
            return [_task(row) for row in rows]

        return await self._db.read(work)

    async def earliest_lease_expiry(self, held: tuple[int, ...]) -> float | None:
        marks = ", ".join("?" * len(held))

        def work(db: sqlite3.Connection) -> float | None:
            row = db.execute(f"SELECT MIN(lease_expires_at) FROM tasks WHERE state IN ({marks})", held).fetchone()
            return None if row[0] is None else float(row[0])

        return await self._db.read(work)


def _add(db: sqlite3.Connection, task: StoredTask, submitted: TaskTransition) -> tuple[StoredTask, bool]:
    # one statement for the usual case (a new key); the first task's row only when taken
    if db.execute(_INSERT_TASK, _values(task, _TASK_FIELDS)).rowcount == 0:
        first = _one(db, "idempotency_key = ?", (task.idempotency_key,))
        if first is None:  # nothing removes tasks
            raise StoreError(f"task with idempotency key {task.idempotency_key!r} vanished")
        return first, False
    _record(db, submitted)
    return task, True


def _apply(db: sqlite3.Connection, task: StoredTask, change: TaskChange) -> StoredTask:
    changed, transitions = change(task)
    moved = [name for name in _TASK_FIELDS[1:] if getattr(changed, name) != getattr(task, name)]
    if moved:
        db.execute(
            f"UPDATE tasks SET {', '.join(f'{name} = ?' for name in moved)} WHERE id = ?",
            (*_values(changed, tuple(moved)), task.id),
        )
    for transition in transitions:
        _record(db, transition)
    return changed


def _record(db: sqlite3.Connection, transition: TaskTransition) -> None:
    values = _values(transition, _TRANSITION_FIELDS)
    db.execute(_INSERT_TRANSITION, (values[0], *values[2:], transition.task_id))


def _values(record: StoredTask | TaskTransition, names: tuple[str, ...]) -> tuple[object, ...]:
    """The record's fields as statement parameters (dataclasses.astuple deep-copies every field:
    a third of a lease's time on the writer thread)."""
    return tuple(getattr(record, name) for name in names)


def _one(db: sqlite3.Connection, where: str, parameters: tuple[object, ...]) -> StoredTask | None:
    row = db.execute(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE {where}", parameters).fetchone()
    return None if row is None else _task(row)


def _filter_sql(where: TaskFilter) -> tuple[str, tuple[object, ...]]:
    clauses: list[str] = []
    parameters: list[object] = []
    if where.states:
        clauses.append(f"state IN ({', '.join('?' * len(where.states))})")
        parameters.extend(where.states)
    for column, value in (("kind", where.kind), ("workflow_id", where.workflow_id)):
        if value:
            clauses.append(f"{column} = ?")
            parameters.append(value)
    if where.holder:
        clauses.append("(holder_instance_id = ? OR holder_agent = ?)")
        parameters.extend((where.holder, where.holder))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(parameters)


def _task(row: tuple[Any, ...]) -> StoredTask:
    return StoredTask(**dict(zip(_TASK_FIELDS, row, strict=True)))
