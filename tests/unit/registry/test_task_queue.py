"""Tasks on a real registry database: the state machine, fencing tokens, lapsed leases, the
idempotency key, bad input, and a restart that keeps leases and tokens."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.store.sqlite import DB_NAME, SCHEMA_VERSION
from meshwarden.registry.store.sqlite.tasks import TaskFilter, TaskStore
from meshwarden.registry.task_queue import (
    CANCELLED,
    EXPIRED,
    LEASED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Holder,
    InvalidTransition,
    LeaseLost,
    Submission,
    TaskQueue,
    UnknownTask,
)
from meshwarden.v1 import controls_pb2
from tests.unit.registry.blocking_store import Store
from tests.unit.sidecar.fakes import FakeClock

A = Holder(instance_id="worker-a", agent="worker")
B = Holder(instance_id="worker-b", agent="worker")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path, event_log_retention=10)
    yield opened
    opened.close()


def _submit(queue: TaskQueue, key: str = "", ttl: float = 5.0, attempts: int = 2) -> str:
    submission = Submission(
        kind="refund",
        workflow_id="wf-1",
        input_json='{"ticket": 7}',
        idempotency_key=key,
        max_attempts=attempts,
        lease_ttl_s=ttl,
    )
    return queue.submit(submission, "operator")[0].id


def test_a_task_runs_queued_leased_running_succeeded_and_each_move_is_recorded(store: Store) -> None:
    clock = FakeClock()
    queue = TaskQueue(TaskStore(store), clock)
    task_id = _submit(queue)
    leased = queue.lease(A, ("refund",))
    assert leased is not None and (leased.id, leased.state, leased.fencing_token) == (task_id, LEASED, 1)
    assert queue.lease(B, ("refund",)) is None  # exactly one holder
    assert queue.start(task_id, A, 1).state == RUNNING
    done = queue.complete(task_id, A, 1, succeeded=True, result_json='{"refunded": true}', error="")
    assert (done.state, done.holder_instance_id) == (SUCCEEDED, "")
    task, timeline = queue.show(task_id)
    assert [(t.from_state, t.to_state, t.executor) for t in timeline] == [
        (0, QUEUED, "operator"),
        (QUEUED, LEASED, "worker-a"),
        (LEASED, RUNNING, "worker-a"),
        (RUNNING, SUCCEEDED, "worker-a"),
    ]
    assert timeline[1].lease_expires_at == pytest.approx(clock.wall() + 5.0)
    assert task.result_json == '{"refunded": true}'


def test_a_lapsed_lease_is_queued_again_the_old_token_is_refused_and_the_last_attempt_expires(store: Store) -> None:
    clock = FakeClock()
    queue = TaskQueue(TaskStore(store), clock)
    task_id = _submit(queue, attempts=2)
    queue.lease(A, ("refund",))
    queue.start(task_id, A, 1)
    clock.now += 4.0
    queue.heartbeat(task_id, A, 1)  # the lease now ends 5 s from here
    clock.now += 4.0
    assert queue.expire_lapsed() == []
    clock.now += 1.5
    assert [t.state for t in queue.expire_lapsed()] == [QUEUED]
    second = queue.lease(B, ("refund",))
    assert second is not None and second.fencing_token == 2
    with pytest.raises(LeaseLost, match=f"lease lost: task {task_id} is held by worker-b since token 2"):
        queue.complete(task_id, A, 1, succeeded=True, result_json="", error="")
    with pytest.raises(LeaseLost):
        queue.heartbeat(task_id, A, 1)
    clock.now += 6.0
    (expired,) = queue.expire_lapsed()
    assert (expired.state, expired.attempts) == (EXPIRED, 2)
    assert "no attempts left" in queue.show(task_id)[1][-1].reason


def test_a_report_after_the_lease_lapsed_is_refused_before_the_reaper_runs(store: Store) -> None:
    clock = FakeClock()
    queue = TaskQueue(TaskStore(store), clock)
    task_id = _submit(queue, ttl=1.0)
    queue.lease(A, ("refund",))
    clock.now += 1.0
    with pytest.raises(LeaseLost):
        queue.start(task_id, A, 1)


def test_other_transitions_are_refused_naming_the_state_and_holder(store: Store) -> None:
    queue = TaskQueue(TaskStore(store), FakeClock())
    task_id = _submit(queue)
    with pytest.raises(InvalidTransition, match=f"cannot requeue task {task_id}: it is queued"):
        queue.requeue(task_id, "operator", "")
    queue.lease(A, ("refund",))
    queue.start(task_id, A, 1)
    with pytest.raises(InvalidTransition, match="it is running, held by worker-a under token 1"):
        queue.start(task_id, A, 1)
    assert queue.cancel(task_id, "operator", "customer withdrew").state == CANCELLED
    with pytest.raises(InvalidTransition, match="cannot cancel task .*: it is cancelled"):
        queue.cancel(task_id, "operator", "")
    with pytest.raises(LeaseLost, match="is cancelled"):
        queue.complete(task_id, A, 1, succeeded=True, result_json="", error="")
    requeued = queue.requeue(task_id, "operator", "try again")
    assert (requeued.state, requeued.attempts, requeued.fencing_token) == (QUEUED, 0, 1)
    again = queue.lease(B, ("refund",))
    assert again is not None and again.fencing_token == 2  # the token never goes back


def test_a_repeated_idempotency_key_returns_the_first_task(store: Store) -> None:
    queue = TaskQueue(TaskStore(store), FakeClock())
    first = _submit(queue, key="ticket-7")
    task, created = queue.submit(
        Submission(kind="refund", workflow_id="wf-2", input_json="{}", idempotency_key="ticket-7"), "operator"
    )
    assert (task.id, task.workflow_id, created) == (first, "wf-1", False)
    assert len(queue.find(TaskFilter())) == 1


@pytest.mark.parametrize(
    ("submission", "field"),
    [
        (Submission(kind="", workflow_id="w", input_json="{}"), "kind"),
        (Submission(kind="k" * 129, workflow_id="w", input_json="{}"), "kind"),
        (Submission(kind="k", workflow_id="w", input_json="{not json"), "input_json"),
        (Submission(kind="k", workflow_id="w", input_json=""), "input_json"),
        (Submission(kind="k", workflow_id="w", input_json="{}", max_attempts=101), "max_attempts"),
        (Submission(kind="k", workflow_id="w", input_json="{}", lease_ttl_s=0.1), "lease_ttl"),
        (Submission(kind="k", workflow_id="w", input_json=f'"{"x" * 70000}"'), "input_json"),
    ],
)
def test_bad_input_names_the_field(store: Store, submission: Submission, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        TaskQueue(TaskStore(store), FakeClock()).submit(submission, "operator")
    assert raised.value.field == field


def test_unknown_tasks_are_named(store: Store) -> None:
    queue = TaskQueue(TaskStore(store), FakeClock())
    with pytest.raises(UnknownTask, match="task 'task-nope' is unknown"):
        queue.show("task-nope")
    with pytest.raises(UnknownTask):
        queue.heartbeat("task-nope", A, 1)


def test_list_filters_by_state_kind_workflow_and_holder(store: Store) -> None:
    queue = TaskQueue(TaskStore(store), FakeClock())
    held = _submit(queue)
    _submit(queue)
    queue.lease(A, ("refund",))
    assert [t.id for t in queue.find(TaskFilter(holder="worker"))] == [held]
    assert [t.id for t in queue.find(TaskFilter(states=(LEASED,), kind="refund", workflow_id="wf-1"))] == [held]
    assert len(queue.find(TaskFilter(states=(QUEUED,)))) == 1
    assert queue.find(TaskFilter(kind="other")) == []


def test_a_restart_keeps_leases_and_tokens_and_forgives_the_downtime(tmp_path: Path) -> None:
    clock = FakeClock()
    store = Store.open(tmp_path, event_log_retention=10)
    queue = TaskQueue(TaskStore(store), clock)
    task_id = _submit(queue, ttl=5.0)
    queue.lease(A, ("refund",))
    store.close()
    clock.now += 60.0  # the registry was down longer than the TTL
    reopened = Store.open(tmp_path, event_log_retention=10)
    try:
        queue = TaskQueue(TaskStore(reopened), clock)
        assert queue.forgive_downtime() == 1
        assert queue.expire_lapsed() == []
        task = queue.heartbeat(task_id, A, 1)
        assert (task.holder_instance_id, task.fencing_token) == ("worker-a", 1)
    finally:
        reopened.close()


def test_an_older_database_gains_the_task_tables(tmp_path: Path) -> None:
    Store.open(tmp_path, event_log_retention=10).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript("DROP TABLE tasks; DROP TABLE task_transitions; PRAGMA user_version = 7;")
    db.close()
    store = Store.open(tmp_path, event_log_retention=10)
    try:
        _submit(TaskQueue(TaskStore(store), FakeClock()))
    finally:
        store.close()
    assert sqlite3.connect(tmp_path / DB_NAME).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_kill_switch_cancels_the_unfinished_tasks_in_its_scope(store: Store) -> None:
    queue = TaskQueue(TaskStore(store), FakeClock())
    held, queued = _submit(queue), _submit(queue)
    queue.lease(A, ("refund",))
    assert [t.id for t in queue.cancel_in_scope(controls_pb2.SCOPE_KIND_AGENT, "worker", "op", "bad refunds")] == [held]
    assert "kill switch: bad refunds" in queue.show(held)[1][-1].reason
    assert queue.cancel_in_scope(controls_pb2.SCOPE_KIND_SESSION, "s-1", "op", "x") == []  # no task has a session
    assert [t.id for t in queue.cancel_in_scope(controls_pb2.SCOPE_KIND_CAPABILITY, "refund", "op", "x")] == [queued]
    assert {t.state for t in queue.find(TaskFilter())} == {CANCELLED}
