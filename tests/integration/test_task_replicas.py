"""Tasks across two registry replicas on one PostgreSQL (a throwaway cluster,
tests/postgres_cluster), as real processes over mTLS: a task submitted through one replica is
leased through the other; its lease lapses there, whichever replica runs the reaper queues it
again, a worker on the first replica takes it under the next token, and the first holder's
completion, sent under its stale token, is refused by the replica it talks to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from meshwarden.v1 import catalog_pb2, registry_pb2, tasks_pb2, tasks_pb2_grpc
from tests.integration.registry_process import RegistryProcess, start_registry
from tests.integration.test_replicas import HASH, _empty_database, _migrate
from tests.postgres_cluster import Cluster

pytestmark = pytest.mark.integration

KIND = "refund.run"
AGENT = "refunder"


@pytest.fixture
async def two_replicas(tmp_path: Path, postgres_cluster: Cluster) -> AsyncIterator[tuple[RegistryProcess, ...]]:
    url = _empty_database(postgres_cluster, "task_replicas")
    _migrate(url)
    # instances registered here renew no lease: a long heartbeat interval keeps them for the test
    started = await asyncio.gather(
        *(start_registry(tmp_path / f"r{n}", "--store", url, heartbeat_interval_s=30, name=f"r{n}") for n in (1, 2))
    )
    try:
        yield tuple(started)
    finally:
        for replica in started:
            await replica.close_channels()
            await replica.child.stop()
            print(f"--- {replica.child.name}\n{replica.child.stderr_text()}")


async def _worker(replica: RegistryProcess) -> tuple[tasks_pb2_grpc.TasksStub, str]:
    """A Tasks stub on `replica` as the agent, and an instance of it registered there."""
    instance = catalog_pb2.Instance(
        agent=AGENT,
        version="1.0.0",
        peer_address="127.0.0.1:7411",
        capabilities=[catalog_pb2.Capability(name=KIND, input_schema_json='{"type":"object"}', schema_hash=HASH)],
    )
    registered = await (await replica.stub(AGENT)).Register(registry_pb2.RegisterRequest(instance=instance), timeout=10)
    return tasks_pb2_grpc.TasksStub(replica.channel(await replica.svid(AGENT))), registered.instance_id


async def test_a_task_submitted_through_one_replica_is_leased_through_the_other_and_a_stale_completion_is_refused(
    two_replicas: tuple[RegistryProcess, RegistryProcess],
) -> None:
    first, second = two_replicas
    operator = tasks_pb2_grpc.TasksStub(first.channel(None, mtls=False))
    submission = tasks_pb2.SubmitTaskRequest(kind=KIND, workflow_id="wf-7", input_json='{"ticket": 7}')
    submission.lease_ttl.FromMilliseconds(1500)
    submitted = await operator.SubmitTask(submission, metadata=first.operator_metadata(), timeout=10)

    # Leased through the second replica: the same task, under token 1.
    late, late_instance = await _worker(second)
    leased = await late.LeaseTask(tasks_pb2.LeaseTaskRequest(instance_id=late_instance, kinds=[KIND]), timeout=10)
    assert (leased.task.id, leased.task.fencing_token) == (submitted.task.id, 1)
    stale = tasks_pb2.TaskReport(task_id=leased.task.id, instance_id=late_instance, fencing_token=1)
    await late.StartTask(stale, timeout=10)

    # Nobody heartbeats: the lease lapses, the reaper (on either replica) queues it again, and a
    # worker on the first replica takes it under token 2.
    prompt, prompt_instance = await _worker(first)
    request = tasks_pb2.LeaseTaskRequest(instance_id=prompt_instance, kinds=[KIND])
    retaken = await prompt.LeaseTask(request, timeout=10)
    for _ in range(200):
        if retaken.HasField("task"):
            break
        await asyncio.sleep(0.1)
        retaken = await prompt.LeaseTask(request, timeout=10)
    assert (retaken.task.id, retaken.task.fencing_token, retaken.task.attempts) == (submitted.task.id, 2, 2)

    # The first holder wakes up and completes under token 1, through the second replica: refused.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await late.CompleteTask(
            tasks_pb2.CompleteTaskRequest(
                task_id=stale.task_id, instance_id=late_instance, fencing_token=1, succeeded=True
            ),
            timeout=10,
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"lease lost: task {submitted.task.id} is held by {prompt_instance} since token 2" in (
        refused.value.details() or ""
    )

    # The current holder's completion counts, and either replica shows the one timeline.
    current = tasks_pb2.TaskReport(task_id=submitted.task.id, instance_id=prompt_instance, fencing_token=2)
    await prompt.StartTask(current, timeout=10)
    await prompt.CompleteTask(
        tasks_pb2.CompleteTaskRequest(
            task_id=current.task_id, instance_id=prompt_instance, fencing_token=2, succeeded=True
        ),
        timeout=10,
    )
    shown = await tasks_pb2_grpc.TasksStub(second.channel(None, mtls=False)).ShowTask(
        tasks_pb2.ShowTaskRequest(task_id=submitted.task.id), metadata=second.operator_metadata(), timeout=10
    )
    assert shown.task.state == tasks_pb2.TASK_STATE_SUCCEEDED
    assert [(t.to_state, t.fencing_token) for t in shown.transitions] == [
        (tasks_pb2.TASK_STATE_QUEUED, 0),
        (tasks_pb2.TASK_STATE_LEASED, 1),
        (tasks_pb2.TASK_STATE_RUNNING, 1),
        (tasks_pb2.TASK_STATE_QUEUED, 1),
        (tasks_pb2.TASK_STATE_LEASED, 2),
        (tasks_pb2.TASK_STATE_RUNNING, 2),
        (tasks_pb2.TASK_STATE_SUCCEEDED, 2),
    ]
