"""Tasks: who holds each one right now, under which fencing token, and every move it made.

One explicit state machine (`ALLOWED`): queued -> leased -> running -> succeeded | failed; a
lapsed lease puts the task back in the queue while attempts remain, else ends it as expired;
an operator cancels any unfinished task and requeues a finished (or stuck) one. Any other move
raises InvalidTransition (FAILED_PRECONDITION) naming the current state and holder. Each move
and its row change commit in one transaction (registry.store.TaskStore: the store runs this
module's pure change functions on the row it read), with the executor, the token, the lease
window and the reason.

Fencing: each lease takes the task's next token (the column only grows and is stored, so a
registry restart keeps it). A holder's report must name the current token and an unlapsed
lease, or it is refused with LeaseLost: "lease lost: task T is held by X since token N".

The reaper (`reap_forever`, supervised by the registry) wakes at the earliest lease expiry and
at least every second. On start, `forgive_downtime` gives every live lease its full TTL, as
registry.leases does for instances: no holder could heartbeat while the registry was down.

Over 300 lines because the operators' moves, the holders' reports and the reaper apply one
transition table and one holder check to the same rows; apart, each would need the others'
internals. Field limits are in registry.task_input, SQL in registry.store.sqlite.tasks and
registry.store.postgres.tasks.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Final

from meshwarden.clock import Clock
from meshwarden.registry.errors import Conflict, InvalidInput, RegistryError
from meshwarden.registry.store import TaskStore
from meshwarden.registry.store.task_records import StoredTask, TaskChange, TaskFilter, TaskTransition
from meshwarden.registry.task_input import (
    DEFAULT_LEASE_TTL_S,
    DEFAULT_MAX_ATTEMPTS,
    MAX_ID_CHARS,
    MAX_LIST,
    MAX_TEXT_CHARS,
    check_id,
    check_outcome,
    check_submission,
    check_text,
)
from meshwarden.v1 import controls_pb2, tasks_pb2

log = logging.getLogger(__name__)

__all__ = [
    "ALLOWED",
    "CANCELLED",
    "Completion",
    "EXPIRED",
    "FAILED",
    "FINISHED",
    "HELD",
    "LEASED",
    "QUEUED",
    "RUNNING",
    "SUCCEEDED",
    "Holder",
    "InvalidTransition",
    "LeaseLost",
    "StoredTask",
    "Submission",
    "TaskFilter",
    "TaskQueue",
    "TaskTransition",
    "UnknownTask",
    "state_name",
]

QUEUED: Final = tasks_pb2.TASK_STATE_QUEUED
LEASED: Final = tasks_pb2.TASK_STATE_LEASED
RUNNING: Final = tasks_pb2.TASK_STATE_RUNNING
SUCCEEDED: Final = tasks_pb2.TASK_STATE_SUCCEEDED
FAILED: Final = tasks_pb2.TASK_STATE_FAILED
EXPIRED: Final = tasks_pb2.TASK_STATE_EXPIRED
CANCELLED: Final = tasks_pb2.TASK_STATE_CANCELLED
HELD: Final = (LEASED, RUNNING)
FINISHED: Final = (SUCCEEDED, FAILED, EXPIRED, CANCELLED)

ALLOWED: Final[Mapping[int, frozenset[int]]] = MappingProxyType(
    {
        QUEUED: frozenset({LEASED, CANCELLED}),
        LEASED: frozenset({RUNNING, QUEUED, EXPIRED, CANCELLED}),
        RUNNING: frozenset({SUCCEEDED, FAILED, QUEUED, EXPIRED, CANCELLED}),
        SUCCEEDED: frozenset({QUEUED}),
        FAILED: frozenset({QUEUED}),
        EXPIRED: frozenset({QUEUED}),
        CANCELLED: frozenset({QUEUED}),
    }
)

REAPER: Final = "registry"
MAX_LEASE_BATCH: Final = 64  # tasks one lease call may take
_REAP_AT_LEAST_EVERY_S: Final = 1.0


def state_name(state: int) -> str:
    return tasks_pb2.TaskState.Name(state).removeprefix("TASK_STATE_").lower()  # type: ignore[arg-type]


class UnknownTask(RegistryError):
    """No task by that id (server: NOT_FOUND)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} is unknown (meshwarden tasks list shows the known ones)")
        self.task_id = task_id


class InvalidTransition(Conflict):
    """The state machine allows no such move from the task's current state."""

    def __init__(self, task: StoredTask, action: str) -> None:
        super().__init__(f"cannot {action} task {task.id}: it is {state_name(task.state)}{_held_by(task)}")
        self.task_id, self.state, self.holder = task.id, task.state, task.holder_instance_id


class LeaseLost(Conflict):
    """The report names a token or holder that is no longer current (or a lapsed lease)."""

    def __init__(self, task: StoredTask, token: int) -> None:
        if task.state in HELD:
            now = f"is held by {task.holder_instance_id} since token {task.fencing_token}"
        else:
            now = f"is {state_name(task.state)} (no holder; last token {task.fencing_token})"
        super().__init__(f"lease lost: task {task.id} {now}; token {token} is no longer current")
        self.task_id, self.current_token, self.holder = task.id, task.fencing_token, task.holder_instance_id


@dataclass(frozen=True, kw_only=True, slots=True)
class Submission:
    kind: str
    workflow_id: str
    input_json: str
    idempotency_key: str = ""
    max_attempts: int = 0
    lease_ttl_s: float = 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Completion:
    """A holder's report that its task ended, under the token it holds."""

    task_id: str
    token: int
    succeeded: bool
    result_json: str = ""
    error: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Holder:
    instance_id: str
    agent: str


class TaskQueue:
    def __init__(self, store: TaskStore, clock: Clock) -> None:
        self._store, self._clock = store, clock
        self._wake = asyncio.Event()
        self._next_reap_at = 0.0  # when the reaper wakes next, unless a lease ends sooner

    async def submit(self, submission: Submission, submitted_by: str) -> tuple[StoredTask, bool]:
        """The new task and True, or the first task with that idempotency key and False."""
        check_submission(submission)
        task = self._new_task(submission, submitted_by)
        stored, created = await self._store.add(task, _transition(task, 0, submitted_by, "submitted", task.created_at))
        if created:
            log.debug("task %s (%s) submitted by %s", stored.id, stored.kind, submitted_by)
        return stored, created

    async def submit_many(self, submissions: list[Submission], submitted_by: str) -> list[tuple[StoredTask, bool]]:
        """`submit` for each, in one transaction; every one is checked before any is stored
        (InvalidInput names the first bad one: "tasks[2].kind ...")."""
        for n, submission in enumerate(submissions):
            try:
                check_submission(submission)
            except InvalidInput as exc:
                raise InvalidInput(f"tasks[{n}].{exc.field}", exc.problem) from exc
        tasks = [self._new_task(s, submitted_by) for s in submissions]
        return await self._store.add_many(
            [(task, _transition(task, 0, submitted_by, "submitted", task.created_at)) for task in tasks]
        )

    def _new_task(self, submission: Submission, submitted_by: str) -> StoredTask:
        now = self._clock.wall()
        return StoredTask(
            id="task-" + secrets.token_hex(8),
            kind=submission.kind,
            workflow_id=submission.workflow_id,
            input_json=submission.input_json,
            idempotency_key=submission.idempotency_key or None,
            state=QUEUED,
            holder_instance_id="",
            holder_agent="",
            fencing_token=0,
            lease_expires_at=0.0,
            attempts=0,
            max_attempts=submission.max_attempts or DEFAULT_MAX_ATTEMPTS,
            lease_ttl_s=submission.lease_ttl_s or DEFAULT_LEASE_TTL_S,
            result_json="",
            error="",
            submitted_by=submitted_by,
            created_at=now,
            updated_at=now,
        )

    async def lease(self, holder: Holder, kinds: tuple[str, ...]) -> StoredTask | None:
        """The oldest queued task of those kinds, now leased to `holder` under the next token."""
        leased = await self.lease_many(holder, kinds, 1)
        return leased[0] if leased else None

    async def lease_many(
        self, holder: Holder, kinds: tuple[str, ...], limit: int, *, start: bool = False
    ) -> list[StoredTask]:
        """Up to `limit` of the oldest queued tasks of those kinds, each now leased to `holder`
        under its next token, in one transaction; with `start`, also RUNNING (both moves
        recorded), which saves the holder a StartTask per task."""
        if not 0 < limit <= MAX_LEASE_BATCH:
            raise InvalidInput("max_tasks", f"must be between 1 and {MAX_LEASE_BATCH}")
        now = self._clock.wall()

        def take(task: StoredTask) -> tuple[StoredTask, tuple[TaskTransition, ...]]:
            leased = replace(
                task,
                state=LEASED,
                holder_instance_id=holder.instance_id,
                holder_agent=holder.agent,
                fencing_token=task.fencing_token + 1,
                lease_expires_at=now + task.lease_ttl_s,
                attempts=task.attempts + 1,
                updated_at=now,
            )
            took = _transition(leased, task.state, holder.instance_id, f"attempt {leased.attempts}", now)
            if not start:
                return leased, (took,)
            running, (started,) = _move(leased, RUNNING, "start", holder.instance_id, "started", now)
            return running, (took, started)

        leased = await self._store.lease_oldest(QUEUED, kinds, take, limit)
        if any(task.lease_expires_at < self._next_reap_at for task in leased):
            self._wake.set()  # a lease ends before the reaper would look again
        return leased

    async def heartbeat(self, task_id: str, holder: Holder, token: int) -> StoredTask:
        """Extends the holder's lease by the task's TTL; not a transition, so not recorded."""
        now = self._clock.wall()

        def renew(task: StoredTask) -> tuple[StoredTask, tuple[TaskTransition, ...]]:
            _check_held(task, holder, token, now)
            return replace(task, lease_expires_at=now + task.lease_ttl_s, updated_at=now), ()

        return await self._change(task_id, renew)

    async def start(self, task_id: str, holder: Holder, token: int) -> StoredTask:
        now = self._clock.wall()

        def start(task: StoredTask) -> tuple[StoredTask, tuple[TaskTransition, ...]]:
            _check_held(task, holder, token, now)
            return _move(task, RUNNING, "start", holder.instance_id, "started", now)

        return await self._change(task_id, start)

    async def complete(
        self, task_id: str, holder: Holder, token: int, *, succeeded: bool, result_json: str, error: str
    ) -> StoredTask:
        check_outcome(result_json, error)
        report = Completion(task_id=task_id, token=token, succeeded=succeeded, result_json=result_json, error=error)
        return await self._change(task_id, _completing(report, holder, self._clock.wall()))

    async def complete_many(self, reports: list[Completion], holder: Holder) -> list[StoredTask | RegistryError]:
        """`complete` for each (of different tasks), in one transaction; each answer is the
        completed task or the error `complete` would have raised for it alone."""
        now = self._clock.wall()
        refused: dict[int, RegistryError] = {}
        changes: list[tuple[str, TaskChange]] = []
        for n, report in enumerate(reports):
            try:
                check_id("task_id", report.task_id)
                check_outcome(report.result_json, report.error)
            except InvalidInput as exc:
                refused[n] = exc
                continue
            changes.append((report.task_id, _completing(report, holder, now)))
        done = iter(await self._store.change_many(changes))
        answers: list[StoredTask | RegistryError] = []
        for n, report in enumerate(reports):
            if n in refused:
                answers.append(refused[n])
                continue
            result = next(done)
            answers.append(UnknownTask(report.task_id) if result is None else result)
        return answers

    async def cancel(self, task_id: str, operator: str, reason: str) -> StoredTask:
        check_text("reason", reason)
        now = self._clock.wall()

        def cancel(task: StoredTask) -> tuple[StoredTask, tuple[TaskTransition, ...]]:
            return _move(task, CANCELLED, "cancel", operator, reason or "cancelled by an operator", now)

        return await self._change(task_id, cancel)

    async def requeue(self, task_id: str, operator: str, reason: str) -> StoredTask:
        """Back in the queue with its attempts reset; a holder's token is stale from now on."""
        check_text("reason", reason)
        now = self._clock.wall()

        def requeue(task: StoredTask) -> tuple[StoredTask, tuple[TaskTransition, ...]]:
            fresh = replace(task, attempts=0, result_json="", error="")
            return _move(fresh, QUEUED, "requeue", operator, reason or "requeued by an operator", now)

        return await self._change(task_id, requeue)

    async def cancel_in_scope(self, scope_kind: int, value: str, actor: str, reason: str) -> list[StoredTask]:
        """Cancels the unfinished tasks a kill switch's scope covers: its instance or agent (the
        holder), workflow, capability (the kind), or all. Other scopes name no task."""
        where = _scope_filter(scope_kind, value)
        if where is None:
            return []
        cancelled = []
        for task in await self._store.find(where):
            try:
                cancelled.append(await self.cancel(task.id, actor, f"kill switch: {reason}"[:MAX_TEXT_CHARS]))
            except InvalidTransition:  # it finished meanwhile
                continue
        if cancelled:
            log.info("kill switch cancelled %d task(s)", len(cancelled))
        return cancelled

    async def show(self, task_id: str) -> tuple[StoredTask, list[TaskTransition]]:
        check_id("task_id", task_id)
        task = await self._store.task(task_id)
        if task is None:
            raise UnknownTask(task_id)
        return task, await self._store.timeline(task_id)

    async def find(self, where: TaskFilter) -> list[StoredTask]:
        for field, value in (("kind", where.kind), ("workflow_id", where.workflow_id), ("holder", where.holder)):
            if len(value) > MAX_ID_CHARS:
                raise InvalidInput(field, f"is over {MAX_ID_CHARS} characters")
        if not 0 < where.limit <= MAX_LIST:
            raise InvalidInput("limit", f"must be between 1 and {MAX_LIST}")
        return await self._store.find(where)

    async def expire_lapsed(self) -> list[StoredTask]:
        """Every lease that lapsed: queued again while attempts remain, else expired."""
        now = self._clock.wall()

        def lapse(task: StoredTask) -> tuple[StoredTask, tuple[TaskTransition, ...]]:
            to = QUEUED if task.attempts < task.max_attempts else EXPIRED
            reason = f"lease expired (no heartbeat from {task.holder_instance_id}); " + (
                "queued again" if to == QUEUED else f"no attempts left of {task.max_attempts}"
            )
            return _move(task, to, "expire", REAPER, reason, now)

        moved = await self._store.lapse(HELD, now, lapse)
        for task in moved:
            log.info("task %s: lease lapsed, now %s", task.id, state_name(task.state))
        return moved

    async def forgive_downtime(self) -> int:
        """Run once at start: no holder could heartbeat while the registry was down."""
        extended = await self._store.extend_leases(HELD, self._clock.wall())
        if extended:
            log.info("extended %d task lease(s) after start", extended)
        return extended

    async def reap_forever(self) -> None:
        while True:
            await self.expire_lapsed()
            earliest = await self._store.earliest_lease_expiry(HELD)
            wait = _REAP_AT_LEAST_EVERY_S
            if earliest is not None:
                wait = min(wait, max(earliest - self._clock.wall(), 0.0) + 0.01)
            self._next_reap_at = self._clock.wall() + wait
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass

    async def _change(self, task_id: str, change: TaskChange) -> StoredTask:
        check_id("task_id", task_id)
        changed = await self._store.change(task_id, change)
        if changed is None:
            raise UnknownTask(task_id)
        return changed


def _completing(report: Completion, holder: Holder, now: float) -> TaskChange:
    """The change that completes the task for `holder`, if it still holds it under the token."""
    to = SUCCEEDED if report.succeeded else FAILED
    reason = "succeeded" if report.succeeded else f"failed: {report.error}" if report.error else "failed"

    def complete(task: StoredTask) -> tuple[StoredTask, tuple[TaskTransition, ...]]:
        _check_held(task, holder, report.token, now)
        done = replace(task, result_json=report.result_json, error=report.error)
        return _move(done, to, "complete", holder.instance_id, reason, now)

    return complete


def _scope_filter(scope_kind: int, value: str) -> TaskFilter | None:
    unfinished = (QUEUED, LEASED, RUNNING)
    if scope_kind in (controls_pb2.SCOPE_KIND_INSTANCE, controls_pb2.SCOPE_KIND_AGENT):
        return TaskFilter(states=(LEASED, RUNNING), holder=value, limit=MAX_LIST)
    if scope_kind == controls_pb2.SCOPE_KIND_WORKFLOW:
        return TaskFilter(states=unfinished, workflow_id=value, limit=MAX_LIST)
    if scope_kind == controls_pb2.SCOPE_KIND_CAPABILITY:
        return TaskFilter(states=unfinished, kind=value, limit=MAX_LIST)
    if scope_kind == controls_pb2.SCOPE_KIND_ALL:
        return TaskFilter(states=unfinished, limit=MAX_LIST)
    return None


def _check_held(task: StoredTask, holder: Holder, token: int, now: float) -> None:
    """Returns when `holder` holds the task's current lease under `token`; LeaseLost otherwise."""
    current = (
        task.state in HELD
        and task.holder_instance_id == holder.instance_id
        and task.holder_agent == holder.agent
        and task.fencing_token == token
        and task.lease_expires_at > now
    )
    if not current:
        raise LeaseLost(task, token)


def _move(
    task: StoredTask, to: int, action: str, executor: str, reason: str, now: float
) -> tuple[StoredTask, tuple[TaskTransition]]:
    if to not in ALLOWED[task.state]:
        raise InvalidTransition(task, action)
    moved = replace(task, state=to, updated_at=now)
    if to not in HELD:
        moved = replace(moved, holder_instance_id="", holder_agent="", lease_expires_at=0.0)
    return moved, (_transition(moved, task.state, executor, reason, now, lease_expires_at=task.lease_expires_at),)


def _transition(
    task: StoredTask,
    from_state: int,
    executor: str,
    reason: str,
    now: float,
    *,
    lease_expires_at: float | None = None,
) -> TaskTransition:
    return TaskTransition(
        task_id=task.id,
        at=now,
        from_state=from_state,
        to_state=task.state,
        executor=executor,
        fencing_token=task.fencing_token,
        lease_expires_at=task.lease_expires_at if lease_expires_at is None else lease_expires_at,
        reason=reason,
    )


def _held_by(task: StoredTask) -> str:
    if task.state in HELD:
        return f", held by {task.holder_instance_id} under token {task.fencing_token}"
    return ""
