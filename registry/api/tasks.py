"""Tasks' RPCs (meshwarden.v1.Tasks): operators submit, cancel, requeue, list and show; an
agent's sidecar leases, heartbeats, starts and completes. Proto in, registry.task_queue, proto out.

Who the holder is comes from the caller's SVID: a sidecar names one of its agent's registered
instances (registry catalog), which must serve every kind it leases; reports are accepted only
from the holding instance under the current token (registry.task_queue). Lease and heartbeat
answers carry the registry's signed fencing claim (meshwarden.task_fence). Who may call what is
registry.authz's table, applied by the interceptor (registry.api.authorization), which also
turns errors into statuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshwarden import task_fence
from meshwarden.registry.api.service import Handler
from meshwarden.registry.authz import current_caller
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.errors import InvalidInput, RegistryError
from meshwarden.registry.receipts import Receipts
from meshwarden.registry.rescue import as_mesh_error, status_for
from meshwarden.registry.task_calls import calls_for
from meshwarden.registry.task_holders import holder_of, operator_name, reporter, submitter
from meshwarden.registry.task_input import MAX_ID_CHARS
from meshwarden.registry.task_queue import Completion, StoredTask, Submission, TaskFilter, TaskQueue, TaskTransition
from meshwarden.registry.wire import duration, timestamp
from meshwarden.v1 import tasks_pb2

MAX_KINDS: Final = 32
MAX_BATCH: Final = 256  # submissions or completions in one SubmitTasks or CompleteTasks
DEFAULT_LIST: Final = 100

Context = grpc.aio.ServicerContext[Any, Any]


class TasksApi:
    def __init__(self, queue: TaskQueue, catalog: Catalog, key: Ed25519PrivateKey, receipts: Receipts) -> None:
        self._queue, self._catalog, self._key, self._receipts = queue, catalog, key, receipts
        self._public_key = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "SubmitTask": self.SubmitTask,
            "LeaseTask": self.LeaseTask,
            "HeartbeatTask": self.HeartbeatTask,
            "StartTask": self.StartTask,
            "CompleteTask": self.CompleteTask,
            "SubmitTasks": self.SubmitTasks,
            "CompleteTasks": self.CompleteTasks,
            "CancelTask": self.CancelTask,
            "RequeueTask": self.RequeueTask,
            "ListTasks": self.ListTasks,
            "ShowTask": self.ShowTask,
            "GetFencingKey": self.GetFencingKey,
        }

    async def GetFencingKey(
        self, _request: tasks_pb2.GetFencingKeyRequest, _: Context
    ) -> tasks_pb2.GetFencingKeyResponse:
        return tasks_pb2.GetFencingKeyResponse(ed25519_public_key=self._public_key)

    async def SubmitTask(self, request: tasks_pb2.SubmitTaskRequest, _: Context) -> tasks_pb2.SubmitTaskResponse:
        task, created = await self._queue.submit(_submission(request), submitter(current_caller()))
        return tasks_pb2.SubmitTaskResponse(task=task_to_proto(task), created=created)

    async def SubmitTasks(self, request: tasks_pb2.SubmitTasksRequest, _: Context) -> tasks_pb2.SubmitTasksResponse:
        """Every submission is checked before any is queued; then all are queued in one transaction."""
        _check_batch("tasks", len(request.tasks))
        submissions = [_submission(r) for r in request.tasks]
        submitted = await self._queue.submit_many(submissions, submitter(current_caller()))
        return tasks_pb2.SubmitTasksResponse(
            tasks=[tasks_pb2.SubmitTaskResponse(task=task_to_proto(t), created=c) for t, c in submitted]
        )

    async def LeaseTask(self, request: tasks_pb2.LeaseTaskRequest, _: Context) -> tasks_pb2.LeaseTaskResponse:
        kinds = tuple(request.kinds)
        if not kinds or len(kinds) > MAX_KINDS or any(not k or len(k) > MAX_ID_CHARS for k in kinds):
            raise InvalidInput("kinds", f"must name 1 to {MAX_KINDS} task kinds of 1 to {MAX_ID_CHARS} characters")
        holder = await holder_of(self._catalog, request.instance_id, current_caller(), "lease tasks", kinds)
        leased = await self._queue.lease_many(holder, kinds, request.max_tasks or 1, start=request.start)
        if not leased:
            return tasks_pb2.LeaseTaskResponse()
        first, *more = (self._lease(task) for task in leased)
        return tasks_pb2.LeaseTaskResponse(task=first.task, signed_token=first.signed_token, more=more)

    async def HeartbeatTask(self, request: tasks_pb2.TaskReport, _: Context) -> tasks_pb2.LeaseTaskResponse:
        holder = reporter(request.instance_id, current_caller(), "heartbeat tasks")
        return self._leased(await self._queue.heartbeat(request.task_id, holder, request.fencing_token))

    async def StartTask(self, request: tasks_pb2.TaskReport, _: Context) -> tasks_pb2.TaskResponse:
        holder = reporter(request.instance_id, current_caller(), "start tasks")
        task = await self._queue.start(request.task_id, holder, request.fencing_token)
        return tasks_pb2.TaskResponse(task=task_to_proto(task))

    async def CompleteTask(self, request: tasks_pb2.CompleteTaskRequest, _: Context) -> tasks_pb2.TaskResponse:
        holder = reporter(request.instance_id, current_caller(), "complete tasks")
        task = await self._queue.complete(
            request.task_id,
            holder,
            request.fencing_token,
            succeeded=request.succeeded,
            result_json=request.result_json,
            error=request.error,
        )
        return tasks_pb2.TaskResponse(task=task_to_proto(task))

    async def CompleteTasks(
        self, request: tasks_pb2.CompleteTasksRequest, _: Context
    ) -> tasks_pb2.CompleteTasksResponse:
        """Each completion as CompleteTask does it, all in one transaction; a refused one is
        answered in its place and does not refuse the others."""
        completions = request.completions
        _check_batch("completions", len(completions))
        if len({c.task_id for c in completions}) != len(completions):
            raise InvalidInput("completions", "name a task more than once")
        if len({c.instance_id for c in completions}) != 1:
            raise InvalidInput("completions", "must all name one instance_id (the holder; one call per instance)")
        holder = reporter(completions[0].instance_id, current_caller(), "complete tasks")
        reports = [
            Completion(
                task_id=c.task_id,
                token=c.fencing_token,
                succeeded=c.succeeded,
                result_json=c.result_json,
                error=c.error,
            )
            for c in completions
        ]
        return tasks_pb2.CompleteTasksResponse(
            results=[
                tasks_pb2.CompleteTaskResult(refused=_refusal(done))
                if isinstance(done, RegistryError)
                else tasks_pb2.CompleteTaskResult(task=task_to_proto(done))
                for done in await self._queue.complete_many(reports, holder)
            ]
        )

    async def CancelTask(self, request: tasks_pb2.OperatorTaskRequest, _: Context) -> tasks_pb2.TaskResponse:
        task = await self._queue.cancel(request.task_id, operator_name(current_caller()), request.reason)
        return tasks_pb2.TaskResponse(task=task_to_proto(task))

    async def RequeueTask(self, request: tasks_pb2.OperatorTaskRequest, _: Context) -> tasks_pb2.TaskResponse:
        task = await self._queue.requeue(request.task_id, operator_name(current_caller()), request.reason)
        return tasks_pb2.TaskResponse(task=task_to_proto(task))

    async def ListTasks(self, request: tasks_pb2.ListTasksRequest, _: Context) -> tasks_pb2.ListTasksResponse:
        where = TaskFilter(
            states=(request.state,) if request.state else (),
            kind=request.kind,
            workflow_id=request.workflow_id,
            holder=request.holder,
            limit=request.limit or DEFAULT_LIST,
        )
        return tasks_pb2.ListTasksResponse(tasks=[task_to_proto(t) for t in await self._queue.find(where)])

    async def ShowTask(self, request: tasks_pb2.ShowTaskRequest, _: Context) -> tasks_pb2.ShowTaskResponse:
        task, transitions = await self._queue.show(request.task_id)
        calls, truncated = await calls_for(self._receipts, task)
        return tasks_pb2.ShowTaskResponse(
            task=task_to_proto(task),
            transitions=[transition_to_proto(t) for t in transitions],
            calls=calls,
            calls_truncated=truncated,
        )

    def _leased(self, task: StoredTask) -> tasks_pb2.LeaseTaskResponse:
        lease = self._lease(task)
        return tasks_pb2.LeaseTaskResponse(task=lease.task, signed_token=lease.signed_token)

    def _lease(self, task: StoredTask) -> tasks_pb2.TaskLease:
        fence = task_fence.Fence(
            task_id=task.id,
            token=task.fencing_token,
            holder_instance_id=task.holder_instance_id,
            holder_agent=task.holder_agent,
            lease_expires_at=task.lease_expires_at,
        )
        return tasks_pb2.TaskLease(task=task_to_proto(task), signed_token=task_fence.sign(self._key, fence))


def _submission(request: tasks_pb2.SubmitTaskRequest) -> Submission:
    return Submission(
        kind=request.kind,
        workflow_id=request.workflow_id,
        input_json=request.input_json,
        idempotency_key=request.idempotency_key,
        max_attempts=request.max_attempts,
        lease_ttl_s=request.lease_ttl.ToTimedelta().total_seconds() if request.HasField("lease_ttl") else 0.0,
    )


def _check_batch(field: str, count: int) -> None:
    if not 0 < count <= MAX_BATCH:
        raise InvalidInput(field, f"must hold 1 to {MAX_BATCH}, not {count}")


def _refusal(exc: RegistryError) -> tasks_pb2.TaskRefusal:
    """What CompleteTask's status would have said about `exc`, as one result of a batch."""
    code, message = status_for(exc)
    typed = as_mesh_error(exc)
    return tasks_pb2.TaskRefusal(code=code.value[0], reason=typed.kind if typed else "", message=message)


def task_to_proto(task: StoredTask) -> tasks_pb2.Task:
    message = tasks_pb2.Task(
        id=task.id,
        kind=task.kind,
        workflow_id=task.workflow_id,
        input_json=task.input_json,
        idempotency_key=task.idempotency_key or "",
        state=task.state,  # type: ignore[arg-type]
        holder_instance_id=task.holder_instance_id,
        holder_agent=task.holder_agent,
        fencing_token=task.fencing_token,
        attempts=task.attempts,
        max_attempts=task.max_attempts,
        lease_ttl=duration(task.lease_ttl_s),
        result_json=task.result_json,
        error=task.error,
        submitted_by=task.submitted_by,
        created_at=timestamp(task.created_at),
        updated_at=timestamp(task.updated_at),
    )
    if task.lease_expires_at:
        message.lease_expires_at.FromDatetime(timestamp(task.lease_expires_at))
    return message


def transition_to_proto(transition: TaskTransition) -> tasks_pb2.TaskTransition:
    message = tasks_pb2.TaskTransition(
        at=timestamp(transition.at),
        from_state=transition.from_state,  # type: ignore[arg-type]
        to_state=transition.to_state,  # type: ignore[arg-type]
        executor=transition.executor,
        fencing_token=transition.fencing_token,
        reason=transition.reason,
    )
    if transition.lease_expires_at:
        message.lease_expires_at.FromDatetime(timestamp(transition.lease_expires_at))
    return message
