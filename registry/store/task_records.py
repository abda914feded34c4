"""The values the tasks aggregate passes across the storage seam (registry.store.TaskStore).

Frozen dataclasses: a task as stored, one move of its state machine, and a list query. The
rules that produce them live in registry.task_queue; every implementation of the store keeps
them field for field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredTask:
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
class TaskTransition:
    """One move: who made it (an instance, an operator, or the registry's reaper), under which
    token and lease window, and why. `seq` is given by the store (1, 2, ... per task)."""

    task_id: str
    seq: int = 0
    at: float
    from_state: int
    to_state: int
    executor: str
    fencing_token: int
    lease_expires_at: float
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskFilter:
    states: tuple[int, ...] = ()
    kind: str = ""
    workflow_id: str = ""
    holder: str = ""  # an instance id or an agent name
    limit: int = 100


# The domain's decision about one stored task, run by the store inside the transaction that
# read it: the row to write and the moves to record, in order (none for a heartbeat; two for a
# lease that also starts the task). It may raise the domain's errors; then nothing is written.
TaskChange = Callable[[StoredTask], "tuple[StoredTask, tuple[TaskTransition, ...]]"]
