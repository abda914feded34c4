"""`@agent.task` workers with real processes: a holder frozen with SIGSTOP past its lease TTL
loses the task to another agent; resumed with SIGCONT, its calls and reports under the old
token are refused (by its own sidecar and by the registry) and the side effect happens once."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration

from meshwarden.v1 import tasks_pb2, tasks_pb2_grpc
from tests.integration.mesh import AGENTS, LocalMesh

pytestmark = pytest.mark.integration

TASK_AGENT = AGENTS / "task_agent.py"


async def _tasks(mesh: LocalMesh, rpc: str, request: object) -> object:
    async with await mesh.operator_channel() as channel:
        return await getattr(tasks_pb2_grpc.TasksStub(channel), rpc)(
            request, metadata=mesh.operator_metadata(), timeout=10
        )


async def _until(mesh: LocalMesh, task_id: str, done: object) -> tasks_pb2.ShowTaskResponse:
    for _ in range(300):
        shown = await _tasks(mesh, "ShowTask", tasks_pb2.ShowTaskRequest(task_id=task_id))
        assert isinstance(shown, tasks_pb2.ShowTaskResponse)
        if done(shown):  # type: ignore[operator]
            return shown
        await asyncio.sleep(0.1)
    raise AssertionError(f"task {task_id} never reached the expected state")


async def test_a_frozen_holder_loses_the_task_and_its_side_effect_happens_once(mesh: LocalMesh, tmp_path: Path) -> None:
    effects = tmp_path / "effects.txt"
    await mesh.pair("ledger")  # serves echo: each holder calls it under its token before the effect
    first_side = await mesh.sidecar("refunds-a")
    first = await mesh.agent(
        first_side, "1.0.0", "--effects", str(effects), "--work-s", "2", "--call", "echo", script=TASK_AGENT
    )
    ttl = Duration()
    ttl.FromMilliseconds(1000)
    submitted = await _tasks(
        mesh,
        "SubmitTask",
        tasks_pb2.SubmitTaskRequest(kind="refund", input_json='{"ticket": 7}', lease_ttl=ttl, max_attempts=3),
    )
    assert isinstance(submitted, tasks_pb2.SubmitTaskResponse)
    task_id = submitted.task.id
    running = await _until(mesh, task_id, lambda s: s.task.state == tasks_pb2.TASK_STATE_RUNNING)
    first_holder = running.task.holder_instance_id

    os.kill(first.process.pid, signal.SIGSTOP)  # frozen mid-task, past its 1 s TTL
    try:
        second_side = await mesh.sidecar("refunds-b")
        await mesh.agent(
            second_side, "1.0.0", "--effects", str(effects), "--work-s", "0", "--call", "echo", script=TASK_AGENT
        )
        done = await _until(mesh, task_id, lambda s: s.task.state == tasks_pb2.TASK_STATE_SUCCEEDED)
    finally:
        os.kill(first.process.pid, signal.SIGCONT)
    assert done.task.holder_instance_id == "" and done.task.fencing_token == 2
    second_holder = [t.executor for t in done.transitions if t.to_state == tasks_pb2.TASK_STATE_SUCCEEDED]
    assert len(second_holder) == 1 and second_holder[0] != first_holder

    for _ in range(300):  # the first agent wakes, finishes its work and tries to go on
        if "lease lost" in first.stderr_text():
            break
        await asyncio.sleep(0.1)
    assert "lease lost" in first.stderr_text()
    assert effects.read_text().splitlines() == [f"{second_holder[0]} {task_id} 2 7"]
    final = await _tasks(mesh, "ShowTask", tasks_pb2.ShowTaskRequest(task_id=task_id))
    assert isinstance(final, tasks_pb2.ShowTaskResponse)
    assert [t.to_state for t in final.transitions].count(tasks_pb2.TASK_STATE_SUCCEEDED) == 1
