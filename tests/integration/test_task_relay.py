"""Tasks through sidecars (real registry, sidecars and probe agents): an agent leases, starts
and completes through its sidecar's local API; a holder that stops heartbeating loses the task
to another agent, and every report and every call under its old token is refused as LeaseLost
(calls by the caller's own sidecar, from the registry's signed claim, without a round trip)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

import meshwarden
from meshwarden import errors
from meshwarden.v1 import receipts_pb2, tasks_pb2, tasks_pb2_grpc
from tests.integration.bundles import ALLOW_ALL
from tests.integration.mesh import LocalMesh
from tests.integration.test_policy import wait_for_revision

pytestmark = pytest.mark.integration


async def _submit(mesh: LocalMesh, ttl_s: float) -> str:
    ttl = Duration()
    ttl.FromMilliseconds(int(ttl_s * 1000))
    async with await mesh.operator_channel() as channel:
        reply = await tasks_pb2_grpc.TasksStub(channel).SubmitTask(
            tasks_pb2.SubmitTaskRequest(kind="probe.count", input_json='{"refund": 7}', lease_ttl=ttl),
            metadata=mesh.operator_metadata(),
            timeout=10,
        )
    return reply.task.id


async def _show(mesh: LocalMesh, task_id: str) -> tasks_pb2.ShowTaskResponse:
    async with await mesh.operator_channel() as channel:
        reply: tasks_pb2.ShowTaskResponse = await tasks_pb2_grpc.TasksStub(channel).ShowTask(
            tasks_pb2.ShowTaskRequest(task_id=task_id), metadata=mesh.operator_metadata(), timeout=10
        )
    return reply


async def test_a_silent_holder_loses_its_task_and_its_old_token_is_refused_through_its_sidecar(
    mesh: LocalMesh,
) -> None:
    worker_side, _ = await mesh.pair("worker")
    helper_side, _ = await mesh.pair("helper")
    bystander_side = await mesh.sidecar("bystander")  # no agent registered behind it
    task_id = await _submit(mesh, ttl_s=1.0)
    async with (
        meshwarden.Client(worker_side.addresses["listen"]) as worker,
        meshwarden.Client(helper_side.addresses["listen"]) as helper,
        meshwarden.Client(bystander_side.addresses["listen"]) as bystander,
    ):
        with pytest.raises(errors.NotRegistered, match="register"):
            await bystander.lease_task("probe.count")
        first = await worker.lease_task("probe.count")
        assert (first.task.id, first.task.fencing_token) == (task_id, 1)
        assert not (await helper.lease_task("probe.count")).HasField("task")  # one holder at a time
        await worker.start_task(task_id, 1)
        await worker.heartbeat_task(task_id, 1)

        second = tasks_pb2.LeaseTaskResponse()  # the worker goes silent; the lease lapses
        for _ in range(100):
            second = await helper.lease_task("probe.count")
            if second.HasField("task"):
                break
            await asyncio.sleep(0.1)
        assert (second.task.id, second.task.fencing_token) == (task_id, 2)
        holder = second.task.holder_instance_id

        # A call under the old claim never leaves the worker's sidecar (the claim's lease expired);
        # the new holder's call goes through; a claim the registry did not sign is refused.
        with pytest.raises(errors.LeaseLost, match=f"lease lost: task {task_id} token 1 held by .* lapsed"):
            await worker.invoke("echo", {"n": 1}, task_token=first.signed_token)
        served = await helper.invoke("echo", {"n": 2}, task_token=second.signed_token, session_id="s-task")
        assert served.value["echo"] == {"n": 2}
        assert served.value["task"] == [task_id, 2]  # the callee's handler reads the verified token
        with pytest.raises(errors.LeaseLost, match="not signed by this mesh's registry"):
            await helper.invoke("echo", {"n": 3}, task_token=b"forged")

        for stale in (worker.heartbeat_task(task_id, 1), worker.complete_task(task_id, 1, succeeded=True)):
            with pytest.raises(errors.LeaseLost, match=f"lease lost: task {task_id} is held by {holder} since token 2"):
                await stale
        await helper.start_task(task_id, 2)
        with pytest.raises(errors.InvalidTaskTransition, match="it is running"):
            await helper.start_task(task_id, 2)
        done = await helper.complete_task(task_id, 2, succeeded=True, result={"refunded": 1})
        assert done.state == tasks_pb2.TASK_STATE_SUCCEEDED
        with pytest.raises(errors.UnknownTask):
            await helper.start_task("task-nope", 1)

    for _ in range(300):  # receipts reach the registry in batches: the session's timeline names the task
        try:
            session = await mesh.ask_receipts("GetSession", receipts_pb2.GetSessionRequest(session_id="s-task"))
        except grpc.aio.AioRpcError:
            session = receipts_pb2.GetSessionResponse()
        if len(session.receipts) == 2:
            break
        await asyncio.sleep(0.1)
    assert {(r.direction, r.task_id, r.fencing_token) for r in session.receipts} == {
        ("outbound", task_id, 2),
        ("inbound", task_id, 2),
    }

    for _ in range(300):  # tasks show lists the calls under each token, the stale holder's refusal too
        shown = await _show(mesh, task_id)
        if {r.fencing_token for r in shown.calls} == {1, 2}:
            break
        await asyncio.sleep(0.1)
    calls = {(r.fencing_token, r.direction, r.status == "OK") for r in shown.calls}
    assert calls == {(1, "outbound", False), (2, "outbound", True), (2, "inbound", True)}, shown.calls
    ends = [t for t in shown.transitions if t.to_state == tasks_pb2.TASK_STATE_SUCCEEDED]
    assert [(t.executor, t.fencing_token) for t in ends] == [(holder, 2)]  # completed once, by the new holder
    assert shown.task.result_json == '{"refunded": 1}'


async def test_an_agent_submits_through_its_sidecar_and_a_repeated_key_returns_the_first_task(
    mesh: LocalMesh,
) -> None:
    side, _ = await mesh.pair("planner")
    async with meshwarden.Client(side.addresses["listen"]) as planner:
        first = await planner.submit_task("probe.count", {"ticket": 9}, workflow_id="wf-9", idempotency_key="t-9")
        again = await planner.submit_task("probe.count", {"ticket": 10}, idempotency_key="t-9")
        with pytest.raises(errors.BadPayload, match="kind"):
            await planner.submit_task("", {"ticket": 11})
    assert first.created and not again.created
    assert again.task.id == first.task.id and again.task.input_json == '{"ticket":9}'
    shown = await _show(mesh, first.task.id)
    assert shown.task.submitted_by == "spiffe://meshwarden.local/agent/planner"
    assert shown.task.workflow_id == "wf-9"

    # An agent may queue only what it may call: the policy decides, as for a call of the kind.
    no_counting = '@id("no-counting")\n@reason("planners plan, they do not count")\nforbid (principal, action, resource == Capability::"probe.count");\n'
    await mesh.push_bundle(mesh.bundles.make(2, {"allow-all.cedar": ALLOW_ALL, "no-counting.cedar": no_counting}))
    await wait_for_revision(mesh, 2, 1)
    async with meshwarden.Client(side.addresses["listen"]) as planner:
        with pytest.raises(errors.PolicyDenied, match="may not submit a probe.count task .*planners plan"):
            await planner.submit_task("probe.count", {"ticket": 12})
