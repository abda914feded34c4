"""Tasks in PostgreSQL: every statement on the `tasks` and `task_transitions` tables, shared by
every replica, so a task submitted through one replica is leased, reported and expired through
any other under the same fencing tokens.

A change is one READ COMMITTED transaction that locks the task's row (SELECT ... FOR UPDATE),
applies the domain's `TaskChange` to it and writes what it returns: two replicas changing one
task take turns, and the second sees the first's result. A lease takes the oldest queued row
that no other transaction holds (FOR UPDATE SKIP LOCKED), so replicas leasing at once take
different tasks without waiting on each other; the reaper skips rows a holder is reporting on
right now and finds them on its next pass if they are still lapsed. The UPDATE also names the
fencing token it read (`AND fencing_token = $n`): under the row lock it always matches, and if
it ever did not, the transaction fails rather than overwrite a newer lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any, Final

from meshwarden.registry.errors import RegistryError, StoreError
from meshwarden.registry.store.postgres.database import Connection, Database
from meshwarden.registry.store.task_records import StoredTask, TaskChange, TaskFilter, TaskTransition

_TASK_FIELDS: Final = tuple(f.name for f in fields(StoredTask))
_TASK_COLUMNS: Final = ", ".join(_TASK_FIELDS)
_TASK_MARKS: Final = ", ".join(f"${n}" for n in range(1, len(_TASK_FIELDS) + 1))
_TRANSITION_FIELDS: Final = tuple(f.name for f in fields(TaskTransition))
_TRANSITION_COLUMNS: Final = ", ".join(_TRANSITION_FIELDS)
# seq is the task's next, taken in the same statement; the task's row lock (or, for its first
# move, the INSERT of the row) keeps two moves of one task from taking the same seq.
_INSERT_TRANSITION: Final = (
    f"INSERT INTO task_transitions ({_TRANSITION_COLUMNS}) SELECT $1, COALESCE(MAX(seq), 0) + 1, "
    f"{', '.join(f'${n}' for n in range(2, len(_TRANSITION_FIELDS)))} FROM task_transitions WHERE task_id = $1"
)


class PostgresTasks:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, task: StoredTask, submitted: TaskTransition) -> tuple[StoredTask, bool]:
        [added] = await self.add_many([(task, submitted)])
        return added

    async def add_many(self, tasks: Sequence[tuple[StoredTask, TaskTransition]]) -> list[tuple[StoredTask, bool]]:
        async def work(connection: Connection) -> list[tuple[StoredTask, bool]]:
            added = [await _add(connection, task) for task, _ in tasks]
            moves = [_transition_row(submitted) for (_, submitted), (_, new) in zip(tasks, added, strict=True) if new]
            if moves:
                await connection.executemany(_INSERT_TRANSITION, moves)
            return added

        return await self._db.write(work)

    async def change_many(self, changes: Sequence[tuple[str, TaskChange]]) -> list[StoredTask | RegistryError | None]:
        async def work(connection: Connection) -> list[StoredTask | RegistryError | None]:
            # locked in id order, so two batches naming the same tasks cannot deadlock
            rows = await connection.fetch(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
                [task_id for task_id, _ in changes],
            )
            locked = {task.id: task for task in map(_task, rows)}
            results: list[StoredTask | RegistryError | None] = []
            moves: list[tuple[object, ...]] = []
            for task_id, change in changes:
                task = locked.get(task_id)
                if task is None:
                    results.append(None)
                    continue
                try:
                    changed, transitions = change(task)
                except RegistryError as exc:  # the domain refused it; nothing of it is written
                    results.append(exc)
                    continue
                await _update(connection, task, changed)
                moves.extend(_transition_row(t) for t in transitions)
                results.append(changed)
            if moves:
                await connection.executemany(_INSERT_TRANSITION, moves)
            return results

        return await self._db.write(work)

    async def lease_oldest(
        self, state: int, kinds: tuple[str, ...], change: TaskChange, limit: int
    ) -> list[StoredTask]:
        async def work(connection: Connection) -> list[StoredTask]:
            rows = await connection.fetch(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE state = $1 AND kind = ANY($2::text[]) "
                "ORDER BY created_at, position LIMIT $3 FOR UPDATE SKIP LOCKED",
                state,
                list(kinds),
                limit,
            )
            return await _apply_all(connection, [_task(row) for row in rows], change)

        return await self._db.write(work)

    async def change(self, task_id: str, change: TaskChange) -> StoredTask | None:
        async def work(connection: Connection) -> StoredTask | None:
            task = await _one(connection, "id = $1 FOR UPDATE", (task_id,))
            return None if task is None else await _apply(connection, task, change)

        return await self._db.write(work)

    async def lapse(self, held: tuple[int, ...], now: float, change: TaskChange) -> list[StoredTask]:
        async def work(connection: Connection) -> list[StoredTask]:
            rows = await connection.fetch(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE state = ANY($1::int[]) AND lease_expires_at <= $2 "
                "ORDER BY lease_expires_at FOR UPDATE SKIP LOCKED",
                list(held),
                now,
            )
            return await _apply_all(connection, [_task(row) for row in rows], change)

        return await self._db.write(work)

    async def extend_leases(self, held: tuple[int, ...], now: float) -> int:
        async def work(connection: Connection) -> int:
            status: str = await connection.execute(
                "UPDATE tasks SET lease_expires_at = GREATEST(lease_expires_at, $1 + lease_ttl_s) "
                "WHERE state = ANY($2::int[])",
                now,
                list(held),
            )
            return int(status.rpartition(" ")[2])

        return await self._db.statement(work)

    async def task(self, task_id: str) -> StoredTask | None:
        return await self._db.read(lambda connection: _one(connection, "id = $1", (task_id,)))

    async def timeline(self, task_id: str) -> list[TaskTransition]:
        async def work(connection: Connection) -> list[TaskTransition]:
            rows = await connection.fetch(
                f"SELECT {_TRANSITION_COLUMNS} FROM task_transitions WHERE task_id = $1 ORDER BY seq", task_id
            )
            return [TaskTransition(**dict(zip(_TRANSITION_FIELDS, row, strict=True))) for row in rows]

        return await self._db.read(work)

    async def find(self, where: TaskFilter) -> list[StoredTask]:
        clauses, parameters = _filter_sql(where)

        async def work(connection: Connection) -> list[StoredTask]:
            rows = await connection.fetch(
                f"SELECT {_TASK_COLUMNS} FROM tasks{clauses} ORDER BY created_at DESC, id LIMIT ${len(parameters) + 1}",
                *parameters,
                where.limit,
            )
            return [_task(row) for row in rows]

        return await self._db.read(work)

    async def earliest_lease_expiry(self, held: tuple[int, ...]) -> float | None:
        async def work(connection: Connection) -> float | None:
            earliest = await connection.fetchval(
                "SELECT MIN(lease_expires_at) FROM tasks WHERE state = ANY($1::int[])", list(held)
            )
            return None if earliest is None else float(earliest)

        return await self._db.read(work)


async def _add(connection: Connection, task: StoredTask) -> tuple[StoredTask, bool]:
    """Inserts the task, or answers the first with its idempotency key (and False)."""
    # ON CONFLICT waits for a concurrent insert of the same key to commit, then does nothing
    status = await connection.execute(
        f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES ({_TASK_MARKS}) ON CONFLICT (idempotency_key) DO NOTHING",
        *_values(task, _TASK_FIELDS),
    )
    if status == "INSERT 0 1":
        return task, True
    first = await _one(connection, "idempotency_key = $1", (task.idempotency_key,))
    if first is None:  # nothing removes tasks
        raise StoreError(f"task with idempotency key {task.idempotency_key!r} vanished")
    return first, False


async def _apply(connection: Connection, task: StoredTask, change: TaskChange) -> StoredTask:
    """Writes what `change` makes of the locked `task`: the columns that moved, and its moves."""
    changed, transitions = change(task)
    await _update(connection, task, changed)
    if transitions:
        await connection.executemany(_INSERT_TRANSITION, [_transition_row(t) for t in transitions])
    return changed


async def _apply_all(connection: Connection, tasks: list[StoredTask], change: TaskChange) -> list[StoredTask]:
    """`_apply` for several locked tasks, with every move recorded in one round trip (a lease
    of 16 that also starts them is 18 round trips, not 49)."""
    decided = [change(task) for task in tasks]
    for task, (changed, _) in zip(tasks, decided, strict=True):
        await _update(connection, task, changed)
    moves = [_transition_row(t) for _, transitions in decided for t in transitions]
    if moves:
        await connection.executemany(_INSERT_TRANSITION, moves)
    return [changed for changed, _ in decided]


async def _update(connection: Connection, task: StoredTask, changed: StoredTask) -> None:
    """Sets the columns that moved, on the row still under the token that was read."""
    moved = [name for name in _TASK_FIELDS[1:] if getattr(changed, name) != getattr(task, name)]
    if not moved:
        return
    sets = ", ".join(f"{name} = ${n}" for n, name in enumerate(moved, start=1))
    status = await connection.execute(
        f"UPDATE tasks SET {sets} WHERE id = ${len(moved) + 1} AND fencing_token = ${len(moved) + 2}",
        *_values(changed, tuple(moved)),
        task.id,
        task.fencing_token,
    )
    if status != "UPDATE 1":
        raise StoreError(f"task {task.id} changed under its row lock (token {task.fencing_token} is gone)")


def _transition_row(transition: TaskTransition) -> tuple[object, ...]:
    """The INSERT's parameters: every field but seq, which the statement takes."""
    values = _values(transition, _TRANSITION_FIELDS)
    return (values[0], *values[2:])


def _values(record: StoredTask | TaskTransition, names: tuple[str, ...]) -> tuple[object, ...]:
    return tuple(getattr(record, name) for name in names)


async def _one(connection: Connection, where: str, parameters: tuple[object, ...]) -> StoredTask | None:
    row = await connection.fetchrow(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE {where}", *parameters)
    return None if row is None else _task(row)


def _filter_sql(where: TaskFilter) -> tuple[str, tuple[object, ...]]:
    clauses: list[str] = []
    parameters: list[object] = []

    def mark(value: object) -> str:
        parameters.append(value)
        return f"${len(parameters)}"

    if where.states:
        clauses.append(f"state = ANY({mark(list(where.states))}::int[])")
    for column, value in (("kind", where.kind), ("workflow_id", where.workflow_id)):
        if value:
            clauses.append(f"{column} = {mark(value)}")
    if where.holder:
        holder = mark(where.holder)
        clauses.append(f"(holder_instance_id = {holder} OR holder_agent = {holder})")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(parameters)


def _task(row: Any) -> StoredTask:
    return StoredTask(**dict(zip(_TASK_FIELDS, row, strict=True)))
