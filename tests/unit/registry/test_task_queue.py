"""Tasks on a real registry database: the state machine, fencing tokens, lapsed leases, the
idempotency key, bad input, and a restart that keeps leases and tokens."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.store import Stores
from meshwarden.registry.store.sqlite import DB_NAME, SCHEMA_VERSION, open_sqlite
from meshwarden.registry.store.task_records import TaskFilter
from meshwarden.registry.task_queue import (
    CANCELLED,
    EXPIRED,
    LEASED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Completion,
    Holder,
    InvalidTransition,
    LeaseLost,
    Submission,
    TaskQueue,
    UnknownTask,
)
from meshwarden.v1 import controls_pb2
from tests.unit.registry.conftest import WITHOUT_RECEIPT_TASK_COLUMN
from tests.unit.sidecar.fakes import FakeClock

A = Holder(instance_id="worker-a", agent="worker")
B = Holder(instance_id="worker-b", agent="worker")


async def _submit(queue: TaskQueue, key: str = "", ttl: float = 5.0, attempts: int = 2) -> str:
    submission = Submission(
        kind="refund",
        workflow_id="wf-1",
        input_json='{"ticket": 7}',
        idempotency_key=key,
        max_attempts=attempts,
        lease_ttl_s=ttl,
    )
    return (await queue.submit(submission, "operator"))[0].id


async def test_a_task_runs_queued_leased_running_succeeded_and_each_move_is_recorded(stores: Stores) -> None:
    clock = FakeClock()
    queue = TaskQueue(stores.tasks, clock)
    task_id = await _submit(queue)
    leased = await queue.lease(A, ("refund",))
    assert leased is not None and (leased.id, leased.state, leased.fencing_token) == (task_id, LEASED, 1)
    assert await queue.lease(B, ("refund",)) is None  # exactly one holder
    assert (await queue.start(task_id, A, 1)).state == RUNNING
    done = await queue.complete(task_id, A, 1, succeeded=True, result_json='{"refunded": true}', error="")
    assert (done.state, done.holder_instance_id) == (SUCCEEDED, "")
    task, timeline = await queue.show(task_id)
    assert [(t.from_state, t.to_state, t.executor) for t in timeline] == [
        (0, QUEUED, "operator"),
        (QUEUED, LEASED, "worker-a"),
        (LEASED, RUNNING, "worker-a"),
        (RUNNING, SUCCEEDED, "worker-a"),
    ]
    assert timeline[1].lease_expires_at == pytest.approx(clock.wall() + 5.0)
    assert task.result_json == '{"refunded": true}'


async def test_concurrent_leases_take_each_task_once_and_reports_on_one_task_take_turns(stores: Stores) -> None:
    queue = TaskQueue(stores.tasks, FakeClock())
    submitted = {await _submit(queue) for _ in range(6)}
    holders = [Holder(instance_id=f"worker-{n}", agent="worker") for n in range(10)]
    leased = await asyncio.gather(*(queue.lease(h, ("refund",)) for h in holders))
    taken = [t for t in leased if t is not None]
    assert sorted(t.id for t in taken) == sorted(submitted)  # six tasks, six holders, none twice
    first = taken[0]
    holder = Holder(instance_id=first.holder_instance_id, agent="worker")
    # the holder's heartbeats and its start race; every one sees the others' writes
    results = await asyncio.gather(
        *(queue.heartbeat(first.id, holder, first.fencing_token) for _ in range(4)),
        queue.start(first.id, holder, first.fencing_token),
    )
    assert results[-1].state == RUNNING
    _, timeline = await queue.show(first.id)
    assert [t.seq for t in timeline] == [1, 2, 3]


async def test_lease_many_takes_the_oldest_in_one_call_and_can_start_them(stores: Stores) -> None:
    queue = TaskQueue(stores.tasks, FakeClock())
    submitted = [await _submit(queue) for _ in range(3)]
    taken = await queue.lease_many(A, ("refund",), 2, start=True)
    assert [(t.id, t.state, t.fencing_token, t.holder_instance_id) for t in taken] == [
        (task_id, RUNNING, 1, "worker-a") for task_id in submitted[:2]
    ]
    _, timeline = await queue.show(submitted[0])
    assert [(t.seq, t.from_state, t.to_state, t.fencing_token) for t in timeline] == [
        (1, 0, QUEUED, 0),
        (2, QUEUED, LEASED, 1),
        (3, LEASED, RUNNING, 1),
    ]
    assert [t.id for t in await queue.lease_many(B, ("refund",), 5)] == submitted[2:]  # fewer than asked
    assert await queue.lease_many(B, ("refund",), 5) == []
    with pytest.raises(InvalidInput, match="max_tasks"):
        await queue.lease_many(B, ("refund",), 65)


async def test_many_submissions_and_completions_in_one_call_each_checked_alone(stores: Stores) -> None:
    queue = TaskQueue(stores.tasks, FakeClock())

    def submission(kind: str, key: str) -> Submission:
        return Submission(kind=kind, workflow_id="wf-2", input_json="{}", idempotency_key=key)

    with pytest.raises(InvalidInput) as bad:
        await queue.submit_many([submission("refund", "a"), submission("", "b")], "operator")
    assert bad.value.field == "tasks[1].kind"
    assert await queue.find(TaskFilter(workflow_id="wf-2")) == []  # a bad one stores none of them
    added = await queue.submit_many([submission("refund", k) for k in ("a", "b", "a", "c")], "operator")
    assert [created for _, created in added] == [True, True, False, True]
    assert added[2][0].id == added[0][0].id  # the repeated key answers the first task

    held = await queue.lease_many(A, ("refund",), 3, start=True)
    await queue.requeue(held[1].id, "operator", "moved")  # its token 1 is stale from now on
    done = await queue.complete_many(
        [
            Completion(task_id=held[0].id, token=1, succeeded=True, result_json='{"ok": true}'),
            Completion(task_id=held[1].id, token=1, succeeded=True),
            Completion(task_id="task-nope", token=1, succeeded=True),
            Completion(task_id=held[2].id, token=1, succeeded=False, result_json="not json"),
            Completion(task_id=held[2].id.upper(), token=1, succeeded=False, error="gave up"),
        ],
        A,
    )
    assert [type(d).__name__ for d in done] == [
        "StoredTask",
        "LeaseLost",
        "UnknownTask",
        "InvalidInput",
        "UnknownTask",
    ]
    assert (await queue.show(held[0].id))[0].state == SUCCEEDED
    assert (await queue.show(held[1].id))[0].state == QUEUED  # the stale completion wrote nothing
    assert (await queue.show(held[2].id))[0].state == RUNNING


async def test_a_lapsed_lease_is_queued_again_the_old_token_is_refused_and_the_last_attempt_expires(
    stores: Stores,
) -> None:
    clock = FakeClock()
    queue = TaskQueue(stores.tasks, clock)
    task_id = await _submit(queue, attempts=2)
    await queue.lease(A, ("refund",))
    await queue.start(task_id, A, 1)
    clock.now += 4.0
    await queue.heartbeat(task_id, A, 1)  # the lease now ends 5 s from here
    clock.now += 4.0
    assert await queue.expire_lapsed() == []
    clock.now += 1.5
    assert [t.state for t in await queue.expire_lapsed()] == [QUEUED]
    second = await queue.lease(B, ("refund",))
    assert second is not None and second.fencing_token == 2
    with pytest.raises(LeaseLost, match=f"lease lost: task {task_id} is held by worker-b since token 2"):
        await queue.complete(task_id, A, 1, succeeded=True, result_json="", error="")
    with pytest.raises(LeaseLost):
        await queue.heartbeat(task_id, A, 1)
    clock.now += 6.0
    (expired,) = await queue.expire_lapsed()
    assert (expired.state, expired.attempts) == (EXPIRED, 2)
    assert "no attempts left" in (await queue.show(task_id))[1][-1].reason


async def test_a_report_after_the_lease_lapsed_is_refused_before_the_reaper_runs(stores: Stores) -> None:
    clock = FakeClock()
    queue = TaskQueue(stores.tasks, clock)
    task_id = await _submit(queue, ttl=1.0)
    await queue.lease(A, ("refund",))
    clock.now += 1.0
    with pytest.raises(LeaseLost):
        await queue.start(task_id, A, 1)


async def test_other_transitions_are_refused_naming_the_state_and_holder(stores: Stores) -> None:
    queue = TaskQueue(stores.tasks, FakeClock())
    task_id = await _submit(queue)
    with pytest.raises(InvalidTransition, match=f"cannot requeue task {task_id}: it is queued"):
        await queue.requeue(task_id, "operator", "")
    await queue.lease(A, ("refund",))
    await queue.start(task_id, A, 1)
    with pytest.raises(InvalidTransition, match="it is running, held by worker-a under token 1"):
        await queue.start(task_id, A, 1)
    assert (await queue.cancel(task_id, "operator", "customer withdrew")).state == CANCELLED
    with pytest.raises(InvalidTransition, match="cannot cancel task .*: it is cancelled"):
        await queue.cancel(task_id, "operator", "")
    with pytest.raises(LeaseLost, match="is cancelled"):
        await queue.complete(task_id, A, 1, succeeded=True, result_json="", error="")
    requeued = await queue.requeue(task_id, "operator", "try again")
    assert (requeued.state, requeued.attempts, requeued.fencing_token) == (QUEUED, 0, 1)
    again = await queue.lease(B, ("refund",))
    assert again is not None and again.fencing_token == 2  # the token never goes back


async def test_a_repeated_idempotency_key_returns_the_first_task(stores: Stores) -> None:
    queue = TaskQueue(stores.tasks, FakeClock())
    first = await _submit(queue, key="ticket-7")
    task, created = await queue.submit(
        Submission(kind="refund", workflow_id="wf-2", input_json="{}", idempotency_key="ticket-7"), "operator"
    )
    assert (task.id, task.workflow_id, created) == (first, "wf-1", False)
    assert len(await queue.find(TaskFilter())) == 1


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
async def test_bad_input_names_the_field(stores: Stores, submission: Submission, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        await TaskQueue(stores.tasks, FakeClock()).submit(submission, "operator")
    assert raised.value.field == field


async def test_unknown_tasks_are_named(stores: Stores) -> None:
    queue = TaskQueue(stores.tasks, FakeClock())
    with pytest.raises(UnknownTask, match="task 'task-nope' is unknown"):
        await queue.show("task-nope")
    with pytest.raises(UnknownTask):
        await queue.heartbeat("task-nope", A, 1)


async def test_list_filters_by_state_kind_workflow_and_holder(stores: Stores) -> None:
    queue = TaskQueue(stores.tasks, FakeClock())
    held = await _submit(queue)
    await _submit(queue)
    await queue.lease(A, ("refund",))
    assert [t.id for t in await queue.find(TaskFilter(holder="worker"))] == [held]
    assert [t.id for t in await queue.find(TaskFilter(states=(LEASED,), kind="refund", workflow_id="wf-1"))] == [held]
    assert len(await queue.find(TaskFilter(states=(QUEUED,)))) == 1
    assert await queue.find(TaskFilter(kind="other")) == []


async def test_forgiving_downtime_gives_every_live_lease_its_full_ttl(stores: Stores) -> None:
    clock = FakeClock()
    queue = TaskQueue(stores.tasks, clock)
    held, queued = await _submit(queue, ttl=5.0), await _submit(queue, ttl=5.0)
    await queue.lease(A, ("refund",))
    clock.now += 60.0  # nobody could heartbeat meanwhile (a restart, or no replica leading)
    assert await queue.forgive_downtime() == 1  # the held one; the queued one has no lease
    assert await queue.expire_lapsed() == []
    task = await queue.heartbeat(held, A, 1)
    assert task.lease_expires_at == pytest.approx(clock.wall() + 5.0)
    assert (await queue.show(queued))[0].lease_expires_at == 0.0


async def test_a_restart_keeps_leases_and_tokens_and_forgives_the_downtime(tmp_path: Path) -> None:
    clock = FakeClock()
    stores = await open_sqlite(tmp_path, event_log_retention=10)
    queue = TaskQueue(stores.tasks, clock)
    task_id = await _submit(queue, ttl=5.0)
    await queue.lease(A, ("refund",))
    await stores.close()
    clock.now += 60.0  # the registry was down longer than the TTL
    reopened = await open_sqlite(tmp_path, event_log_retention=10)
    try:
        queue = TaskQueue(reopened.tasks, clock)
        assert await queue.forgive_downtime() == 1
        assert await queue.expire_lapsed() == []
        task = await queue.heartbeat(task_id, A, 1)
        assert (task.holder_instance_id, task.fencing_token) == ("worker-a", 1)
    finally:
        await reopened.close()


async def test_an_older_database_gains_the_task_tables(tmp_path: Path) -> None:
    await (await open_sqlite(tmp_path, event_log_retention=10)).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript(
        WITHOUT_RECEIPT_TASK_COLUMN + "DROP TABLE tasks; DROP TABLE task_transitions; PRAGMA user_version = 7;"
    )
    db.close()
    stores = await open_sqlite(tmp_path, event_log_retention=10)
    try:
        await _submit(TaskQueue(stores.tasks, FakeClock()))
    finally:
        await stores.close()
    assert sqlite3.connect(tmp_path / DB_NAME).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_a_kill_switch_cancels_the_unfinished_tasks_in_its_scope(stores: Stores) -> None:
    queue = TaskQueue(stores.tasks, FakeClock())
    held, queued = await _submit(queue), await _submit(queue)
    await queue.lease(A, ("refund",))
    by_agent = await queue.cancel_in_scope(controls_pb2.SCOPE_KIND_AGENT, "worker", "op", "bad refunds")
    assert [t.id for t in by_agent] == [held]
    assert "kill switch: bad refunds" in (await queue.show(held))[1][-1].reason
    assert await queue.cancel_in_scope(controls_pb2.SCOPE_KIND_SESSION, "s-1", "op", "x") == []  # no task has a session
    by_kind = await queue.cancel_in_scope(controls_pb2.SCOPE_KIND_CAPABILITY, "refund", "op", "x")
    assert [t.id for t in by_kind] == [queued]
    assert {t.state for t in await queue.find(TaskFilter())} == {CANCELLED}
