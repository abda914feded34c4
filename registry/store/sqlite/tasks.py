"""The tasks aggregate's storage: every statement on the tasks and task_transitions tables
(schema in registry.store's migration list), and nowhere else.

`TaskStore.write(work)` runs `work` on a `TaskRows` (typed reads and writes) inside one
transaction, so registry.task_queue checks a transition and records it in one commit; a second
implementation (PostgreSQL) replaces this module alone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields
from typing import Final, TypeVar

from meshwarden.registry.store.sqlite.blocking import BlockingStore as Store
from meshwarden.registry.store.sqlite.blocking import Row

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskRow:
    id: str
    kind: str
    workflow_id: str
    input_json: str
    idempotency_key: str | None
    state: int  # tasks_pb2.TaskState
    holder_instance_id: str
    holder_agent: str
    fencing_token: int
    lease_expires_at: float
    attempts: int
    max_attempts: int
    lease_ttl_s: float
    result_json: str
    error: str
    submitted_by: str
    created_at: float
    updated_at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class TransitionRow:
    task_id: str
    seq: int
    at: float
    from_state: int
    to_state: int
    executor: str
    fencing_token: int
    lease_expires_at: float
    reason: str


_TASK_COLUMNS: Final = ", ".join(f.name for f in fields(TaskRow))
_TRANSITION_COLUMNS: Final = ", ".join(f.name for f in fields(TransitionRow))


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskFilter:
    states: tuple[int, ...] = ()
    kind: str = ""
    workflow_id: str = ""
    holder: str = ""  # an instance id or an agent name
    limit: int = 100


class TaskRows:
    """Reads and writes inside one transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def task(self, task_id: str) -> TaskRow | None:
        row = self._db.execute(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return None if row is None else _task(row)

    def by_idempotency_key(self, key: str) -> TaskRow | None:
        row = self._db.execute(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE idempotency_key = ?", (key,)).fetchone()
        return None if row is None else _task(row)

    def oldest_queued(self, state: int, kinds: tuple[str, ...]) -> TaskRow | None:
        row = self._db.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE state = ? AND kind IN ({','.join('?' * len(kinds))}) "
            "ORDER BY created_at, rowid LIMIT 1",
            (state, *kinds),
        ).fetchone()
        return None if row is None else _task(row)

    def lapsed(self, states: tuple[int, ...], now: float) -> list[TaskRow]:
        rows = self._db.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE state IN ({','.join('?' * len(states))}) "
            "AND lease_expires_at <= ? ORDER BY lease_expires_at",
            (*states, now),
        ).fetchall()
        return [_task(r) for r in rows]

    def put(self, task: TaskRow) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO tasks ({_TASK_COLUMNS}) VALUES ({','.join('?' * len(fields(TaskRow)))})",
            astuple(task),
        )

    def record(self, transition: TransitionRow) -> None:
        self._db.execute(
            f"INSERT INTO task_transitions ({_TRANSITION_COLUMNS}) "
            f"VALUES ({','.join('?' * len(fields(TransitionRow)))})",
            astuple(transition),
        )

    def next_seq(self, task_id: str) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM task_transitions WHERE task_id = ?", (task_id,)).fetchone()
        return 1 if row[0] is None else int(row[0]) + 1

    def extend_leases(self, states: tuple[int, ...], now: float) -> int:
        """Every live lease gets at least its full TTL from `now` (registry start)."""
        cursor = self._db.execute(
            "UPDATE tasks SET lease_expires_at = MAX(lease_expires_at, ? + lease_ttl_s) "
            f"WHERE state IN ({','.join('?' * len(states))})",
            (now, *states),
        )
        return cursor.rowcount


class TaskStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    def write(self, work: Callable[[TaskRows], T]) -> T:
        """Runs `work` in one transaction: its reads and writes commit together or not at all."""
        with self._store.transaction() as db:
            return work(TaskRows(db))

    def task(self, task_id: str) -> TaskRow | None:
        rows = self._store.query(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,))
        return _task(rows[0]) if rows else None

    def transitions(self, task_id: str) -> list[TransitionRow]:
        rows = self._store.query(
            f"SELECT {_TRANSITION_COLUMNS} FROM task_transitions WHERE task_id = ? ORDER BY seq", (task_id,)
        )
        return [TransitionRow(**dict(zip([f.name for f in fields(TransitionRow)], r, strict=True))) for r in rows]

    def find(self, where: TaskFilter) -> list[TaskRow]:
        clauses, parameters = _filter_sql(where)
        rows = self._store.query(
            f"SELECT {_TASK_COLUMNS} FROM tasks{clauses} ORDER BY created_at DESC, id LIMIT ?",
            (*parameters, where.limit),
        )
        return [_task(r) for r in rows]

    def earliest_lease_expiry(self, states: tuple[int, ...]) -> float | None:
        rows = self._store.query(
            f"SELECT MIN(lease_expires_at) FROM tasks WHERE state IN ({','.join('?' * len(states))})", states
        )
        return None if rows[0][0] is None else float(rows[0][0])


def _filter_sql(where: TaskFilter) -> tuple[str, tuple[object, ...]]:
    clauses: list[str] = []
    parameters: list[object] = []
    if where.states:
        clauses.append(f"state IN ({','.join('?' * len(where.states))})")
        parameters.extend(where.states)
    for column, value in (("kind", where.kind), ("workflow_id", where.workflow_id)):
        if value:
            clauses.append(f"{column} = ?")
            parameters.append(value)
    if where.holder:
        clauses.append("(holder_instance_id = ? OR holder_agent = ?)")
        parameters.extend((where.holder, where.holder))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(parameters)


def _task(row: Row) -> TaskRow:
    return TaskRow(**dict(zip([f.name for f in fields(TaskRow)], row, strict=True)))
