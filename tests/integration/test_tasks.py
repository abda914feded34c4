"""Tasks on a real registry process over real gRPC: operators with the token on the TLS port,
agents with their own SVIDs on the mTLS port (as their sidecars would be)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.duration_pb2 import Duration

from meshwarden import task_fence
from meshwarden.cli import exit_codes
from meshwarden.registry.operators import OPERATOR_TOKEN_FILE
from meshwarden.supervise import meshwarden_argv
from meshwarden.v1 import catalog_pb2, registry_pb2, tasks_pb2, tasks_pb2_grpc
from tests.integration.registry_process import RegistryProcess, start_registry

pytestmark = pytest.mark.integration

HEARTBEAT_S = 5.0  # instances stay registered for the whole test without renewing
HASH = "sha256:" + "f" * 64


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[RegistryProcess]:
    running = await start_registry(tmp_path, heartbeat_interval_s=HEARTBEAT_S)
    try:
        yield running
    finally:
        await running.close_channels()
        await running.child.stop()
        print(running.child.stderr_text())  # pytest shows it only when the test failed


def _operator(registry: RegistryProcess) -> tasks_pb2_grpc.TasksStub:
    return tasks_pb2_grpc.TasksStub(registry.channel(None, mtls=False))


async def _agent(registry: RegistryProcess, agent: str) -> tasks_pb2_grpc.TasksStub:
    return tasks_pb2_grpc.TasksStub(registry.channel(await registry.svid(agent)))


async def _register(registry: RegistryProcess, agent: str, *capabilities: str) -> str:
    instance = catalog_pb2.Instance(
        agent=agent,
        version="1.0.0",
        peer_address="127.0.0.1:7411",
        capabilities=[
            catalog_pb2.Capability(name=name, input_schema_json='{"type":"object"}', schema_hash=HASH)
            for name in capabilities
        ],
    )
    stub = await registry.stub(agent)
    reply: registry_pb2.RegisterResponse = await stub.Register(
        registry_pb2.RegisterRequest(instance=instance), timeout=5
    )
    return reply.instance_id


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    return raised.value


async def _public_key(stub: tasks_pb2_grpc.TasksStub) -> Ed25519PublicKey:
    reply = await stub.GetFencingKey(tasks_pb2.GetFencingKeyRequest(), timeout=5)
    return Ed25519PublicKey.from_public_bytes(reply.ed25519_public_key)


async def test_a_task_is_submitted_once_leased_by_one_holder_and_reported_only_by_it(
    registry: RegistryProcess,
) -> None:
    operator, meta = _operator(registry), registry.operator_metadata()
    submit = tasks_pb2.SubmitTaskRequest(
        kind="refund", workflow_id="wf-1", input_json='{"ticket": 7}', idempotency_key="ticket-7"
    )
    first = await operator.SubmitTask(submit, metadata=meta, timeout=5)
    again = await operator.SubmitTask(submit, metadata=meta, timeout=5)
    assert first.created and not again.created and again.task.id == first.task.id
    task_id = first.task.id

    worker = await _register(registry, "worker", "refund")
    other = await _register(registry, "other", "refund")
    bystander = await _register(registry, "bystander", "lookup")
    worker_stub, other_stub = await _agent(registry, "worker"), await _agent(registry, "other")

    denied = await _refused(
        (await _agent(registry, "bystander")).LeaseTask(
            tasks_pb2.LeaseTaskRequest(instance_id=bystander, kinds=["refund"]), timeout=5
        )
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED and "does not serve 'refund'" in str(denied.details())
    impostor = await _refused(
        other_stub.LeaseTask(tasks_pb2.LeaseTaskRequest(instance_id=worker, kinds=["refund"]), timeout=5)
    )
    assert impostor.code() == grpc.StatusCode.PERMISSION_DENIED

    leased = await worker_stub.LeaseTask(tasks_pb2.LeaseTaskRequest(instance_id=worker, kinds=["refund"]), timeout=5)
    assert (leased.task.id, leased.task.fencing_token, leased.task.holder_instance_id) == (task_id, 1, worker)
    fence = task_fence.verify(await _public_key(worker_stub), leased.signed_token, now=leased.task.updated_at.seconds)
    assert (fence.task_id, fence.token, fence.holder_instance_id) == (task_id, 1, worker)
    nothing = await other_stub.LeaseTask(tasks_pb2.LeaseTaskRequest(instance_id=other, kinds=["refund"]), timeout=5)
    assert not nothing.HasField("task")

    stale = await _refused(
        other_stub.StartTask(tasks_pb2.TaskReport(task_id=task_id, instance_id=other, fencing_token=1), timeout=5)
    )
    assert stale.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"lease lost: task {task_id} is held by {worker} since token 1" in str(stale.details())

    report = tasks_pb2.TaskReport(task_id=task_id, instance_id=worker, fencing_token=1)
    await worker_stub.StartTask(report, timeout=5)
    twice = await _refused(worker_stub.StartTask(report, timeout=5))
    assert twice.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"it is running, held by {worker} under token 1" in str(twice.details())
    done = await worker_stub.CompleteTask(
        tasks_pb2.CompleteTaskRequest(
            task_id=task_id, instance_id=worker, fencing_token=1, succeeded=True, result_json='{"ok": true}'
        ),
        timeout=5,
    )
    assert done.task.state == tasks_pb2.TASK_STATE_SUCCEEDED

    shown = await operator.ShowTask(tasks_pb2.ShowTaskRequest(task_id=task_id), metadata=meta, timeout=5)
    assert [t.to_state for t in shown.transitions] == [
        tasks_pb2.TASK_STATE_QUEUED,
        tasks_pb2.TASK_STATE_LEASED,
        tasks_pb2.TASK_STATE_RUNNING,
        tasks_pb2.TASK_STATE_SUCCEEDED,
    ]
    assert [t.executor for t in shown.transitions[1:]] == [worker] * 3


async def test_unknown_tasks_bad_input_and_missing_credentials_get_clear_answers(registry: RegistryProcess) -> None:
    operator, meta = _operator(registry), registry.operator_metadata()
    unknown = await _refused(
        operator.ShowTask(tasks_pb2.ShowTaskRequest(task_id="task-nope"), metadata=meta, timeout=5)
    )
    assert unknown.code() == grpc.StatusCode.NOT_FOUND and "task-nope" in str(unknown.details())
    bad = await _refused(
        operator.SubmitTask(
            tasks_pb2.SubmitTaskRequest(kind="refund", input_json="{not json"), metadata=meta, timeout=5
        )
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "input_json is not JSON" in str(bad.details())
    anonymous = await _refused(
        operator.SubmitTask(tasks_pb2.SubmitTaskRequest(kind="refund", input_json="{}"), timeout=5)
    )
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED
    # An agent submits as itself (its sidecar relays SubmitTask with its SVID).
    by_agent = await (await _agent(registry, "worker")).SubmitTask(
        tasks_pb2.SubmitTaskRequest(kind="refund", input_json="{}"), timeout=5
    )
    assert by_agent.created and by_agent.task.submitted_by.endswith("/agent/worker")


async def test_a_restart_keeps_leases_and_tokens_and_a_lapsed_lease_passes_to_the_next_holder(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    meta = registry.operator_metadata()
    submitted = await _operator(registry).SubmitTask(
        tasks_pb2.SubmitTaskRequest(kind="refund", input_json="{}", lease_ttl=_seconds(2.0)), metadata=meta, timeout=5
    )
    task_id = submitted.task.id
    first = await _register(registry, "worker", "refund")
    second = await _register(registry, "helper", "refund")
    await (await _agent(registry, "worker")).LeaseTask(
        tasks_pb2.LeaseTaskRequest(instance_id=first, kinds=["refund"]), timeout=5
    )

    restarted = await registry.restart(tmp_path, heartbeat_interval_s=HEARTBEAT_S)
    try:
        worker = await _agent(restarted, "worker")
        beat = await worker.HeartbeatTask(
            tasks_pb2.TaskReport(task_id=task_id, instance_id=first, fencing_token=1), timeout=5
        )
        assert (beat.task.holder_instance_id, beat.task.fencing_token) == (first, 1)

        helper = await _agent(restarted, "helper")
        taken = await _lease_when_queued(helper, second)  # the worker stops heartbeating
        assert (taken.task.id, taken.task.fencing_token) == (task_id, 2)
        late = await _refused(
            worker.CompleteTask(
                tasks_pb2.CompleteTaskRequest(task_id=task_id, instance_id=first, fencing_token=1, succeeded=True),
                timeout=5,
            )
        )
        assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"lease lost: task {task_id} is held by {second} since token 2" in str(late.details())
        shown = await _operator(restarted).ShowTask(
            tasks_pb2.ShowTaskRequest(task_id=task_id), metadata=restarted.operator_metadata(), timeout=5
        )
        assert any("lease expired" in t.reason and t.executor == "registry" for t in shown.transitions)
    finally:
        await restarted.close_channels()
        await restarted.child.stop()


async def _lease_when_queued(stub: tasks_pb2_grpc.TasksStub, instance_id: str) -> tasks_pb2.LeaseTaskResponse:
    for _ in range(200):
        reply: tasks_pb2.LeaseTaskResponse = await stub.LeaseTask(
            tasks_pb2.LeaseTaskRequest(instance_id=instance_id, kinds=["refund"]), timeout=5
        )
        if reply.HasField("task"):
            return reply
        await asyncio.sleep(0.1)
    raise AssertionError("the lapsed lease never came back to the queue")


def _seconds(value: float) -> Duration:
    duration = Duration()
    duration.FromMilliseconds(int(value * 1000))
    return duration


async def _cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *meshwarden_argv(*args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_submits_lists_shows_cancels_and_requeues(registry: RegistryProcess) -> None:
    operator = (
        "--registry", registry.listen, "--ca-pin", registry.ca_fingerprint,
        "--operator-token-file", str(registry.data_dir / OPERATOR_TOKEN_FILE),
    )  # fmt: skip
    submit = ("tasks", "submit", "--kind", "refund", "--workflow", "wf-9", "--input", '{"ticket": 9}')
    code, out, err = await _cli(*submit, "--idempotency-key", "t9", *operator, "--output", "json")
    assert code == 0, err
    task = json.loads(out)["task"]
    assert (task["state"], task["workflow_id"]) == ("queued", "wf-9")
    code, out, _ = await _cli(*submit, "--idempotency-key", "t9", *operator)
    assert code == 0 and f"task {task['id']} already exists" in out

    code, out, _ = await _cli("tasks", "list", "--state", "queued", "--workflow", "wf-9", *operator, "--output", "json")
    assert code == 0 and [t["id"] for t in json.loads(out)] == [task["id"]]
    code, out, _ = await _cli("tasks", "cancel", task["id"], "--reason", "customer withdrew", *operator)
    assert code == 0 and "cancelled" in out
    code, _, err = await _cli("tasks", "cancel", task["id"], *operator)
    assert code == exit_codes.FAILED and "it is cancelled" in err
    code, out, _ = await _cli("tasks", "requeue", task["id"], *operator)
    assert code == 0 and "queued again" in out
    code, out, _ = await _cli("tasks", "show", task["id"], *operator)
    assert code == 0
    timeline, calls = out.splitlines()[3:-1], out.splitlines()[-1]
    assert [line.split()[-1] for line in timeline] == ["submitted", "withdrew", "operator"]
    assert calls.startswith("calls: none recorded")  # no call was made for it
    code, _, err = await _cli("tasks", "show", "task-nope", *operator)
    assert code == exit_codes.FAILED and "task-nope" in err
    code, _, err = await _cli("tasks", "submit", "--kind", "refund", "--input", "{bad", *operator)
    assert code == exit_codes.USAGE and "--input must be JSON" in err

    code, out, _ = await _cli("tasks", "submit", "--kind", "refund", "--workflow", "wf-k", "--input", "{}", *operator)
    assert code == 0
    code, _, err = await _cli("kill", "--workflow", "wf-k", "--reason", "runaway workflow", "--wait-s", "1", *operator)
    assert code == 0, err
    code, out, _ = await _cli("tasks", "list", "--workflow", "wf-k", *operator, "--output", "json")
    assert [(t["state"], t["workflow_id"]) for t in json.loads(out)] == [("cancelled", "wf-k")]


async def test_batched_calls_submit_lease_start_and_complete_many_each_checked_alone(registry: RegistryProcess) -> None:
    operator, metadata = _operator(registry), registry.operator_metadata()
    instance = await _register(registry, "batcher", "batch.run")
    agent = await _agent(registry, "batcher")

    def submission(kind: str, n: int) -> tasks_pb2.SubmitTaskRequest:
        return tasks_pb2.SubmitTaskRequest(kind=kind, input_json=json.dumps({"n": n}), idempotency_key=f"k{n}")

    bad = tasks_pb2.SubmitTasksRequest(tasks=[submission("batch.run", 0), submission("", 1)])
    refused = await _refused(operator.SubmitTasks(bad, metadata=metadata, timeout=5))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT and "tasks[1].kind" in (refused.details() or "")
    listed = await operator.ListTasks(tasks_pb2.ListTasksRequest(kind="batch.run"), metadata=metadata, timeout=5)
    assert list(listed.tasks) == []  # a bad one queues none of them

    good = tasks_pb2.SubmitTasksRequest(tasks=[submission("batch.run", n) for n in range(3)])
    submitted = await operator.SubmitTasks(good, metadata=metadata, timeout=5)
    assert [s.created for s in submitted.tasks] == [True, True, True]

    leased = await agent.LeaseTask(
        tasks_pb2.LeaseTaskRequest(instance_id=instance, kinds=["batch.run"], max_tasks=2, start=True), timeout=5
    )
    held = [tasks_pb2.TaskLease(task=leased.task, signed_token=leased.signed_token), *leased.more]
    assert [h.task.id for h in held] == [s.task.id for s in submitted.tasks[:2]]  # the oldest two
    assert {(h.task.state, h.task.fencing_token) for h in held} == {(tasks_pb2.TASK_STATE_RUNNING, 1)}
    key = await _public_key(agent)
    assert [task_fence.verify(key, h.signed_token, now=0.0).task_id for h in held] == [h.task.id for h in held]

    # An operator requeues the second while its holder works: its token 1 is stale from now on.
    await operator.RequeueTask(
        tasks_pb2.OperatorTaskRequest(task_id=held[1].task.id, reason="moved"), metadata=metadata, timeout=5
    )
    done = await agent.CompleteTasks(
        tasks_pb2.CompleteTasksRequest(
            completions=[
                tasks_pb2.CompleteTaskRequest(task_id=h.task.id, instance_id=instance, fencing_token=1, succeeded=True)
                for h in held
            ]
        ),
        timeout=5,
    )
    first, second = done.results
    assert first.task.state == tasks_pb2.TASK_STATE_SUCCEEDED and not first.HasField("refused")
    assert not second.HasField("task")
    assert (second.refused.code, second.refused.reason) == (grpc.StatusCode.FAILED_PRECONDITION.value[0], "lease_lost")
    assert f"lease lost: task {held[1].task.id}" in second.refused.message

    shown = await operator.ShowTask(tasks_pb2.ShowTaskRequest(task_id=held[0].task.id), metadata=metadata, timeout=5)
    assert [t.to_state for t in shown.transitions] == [
        tasks_pb2.TASK_STATE_QUEUED,
        tasks_pb2.TASK_STATE_LEASED,
        tasks_pb2.TASK_STATE_RUNNING,
        tasks_pb2.TASK_STATE_SUCCEEDED,
    ]
    too_many = tasks_pb2.LeaseTaskRequest(instance_id=instance, kinds=["batch.run"], max_tasks=65)
    refused = await _refused(agent.LeaseTask(too_many, timeout=5))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT and "max_tasks" in (refused.details() or "")
