"""The gRPC face of tasks (meshwarden.v1.Tasks): operators submit, cancel, requeue, list and
show; an agent's sidecar leases, heartbeats, starts and completes.

Who the holder is comes from the caller's SVID: a sidecar names one of its agent's registered
instances (registry catalog), which must serve every kind it leases; reports are accepted only
from the holding instance under the current token (registry.task_queue). Lease and heartbeat
answers carry the registry's signed fencing claim (meshwarden.task_fence). Errors become
statuses in registry.rescue.
"""

from __future__ import annotations

from typing import Any, Final

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshwarden import task_fence
from meshwarden.registry.authz import Authorizer, Caller, method, require_agent
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.errors import InvalidInput, PermissionDenied, UnknownInstance
from meshwarden.registry.rescue import serve_unary, serve_unary_async
from meshwarden.registry.store.sqlite.tasks import TaskFilter, TaskRow, TransitionRow
from meshwarden.registry.task_input import MAX_ID_CHARS
from meshwarden.registry.task_queue import Holder, Submission, TaskQueue
from meshwarden.registry.wire import duration, timestamp
from meshwarden.v1 import tasks_pb2, tasks_pb2_grpc

SERVICE_NAME: Final = tasks_pb2.DESCRIPTOR.services_by_name["Tasks"].full_name
SUBMIT: Final = method(SERVICE_NAME, "SubmitTask")
LEASE: Final = method(SERVICE_NAME, "LeaseTask")
HEARTBEAT: Final = method(SERVICE_NAME, "HeartbeatTask")
START: Final = method(SERVICE_NAME, "StartTask")
COMPLETE: Final = method(SERVICE_NAME, "CompleteTask")
CANCEL: Final = method(SERVICE_NAME, "CancelTask")
REQUEUE: Final = method(SERVICE_NAME, "RequeueTask")
LIST: Final = method(SERVICE_NAME, "ListTasks")
SHOW: Final = method(SERVICE_NAME, "ShowTask")
FENCING_KEY: Final = method(SERVICE_NAME, "GetFencingKey")
MAX_KINDS: Final = 32
DEFAULT_LIST: Final = 100

Context = grpc.aio.ServicerContext[Any, Any]


class TasksService(tasks_pb2_grpc.TasksServicer):
    def __init__(self, queue: TaskQueue, catalog: Catalog, key: Ed25519PrivateKey, authorizer: Authorizer) -> None:
        self._queue, self._catalog, self._key, self._authorizer = queue, catalog, key, authorizer

    async def SubmitTask(self, request: tasks_pb2.SubmitTaskRequest, context: Context) -> tasks_pb2.SubmitTaskResponse:
        return await serve_unary(SUBMIT, self._submit, request, context, self._authorizer)

    async def LeaseTask(self, request: tasks_pb2.LeaseTaskRequest, context: Context) -> tasks_pb2.LeaseTaskResponse:
        return await serve_unary_async(LEASE, self._lease, request, context, self._authorizer)

    async def HeartbeatTask(self, request: tasks_pb2.TaskReport, context: Context) -> tasks_pb2.LeaseTaskResponse:
        return await serve_unary_async(HEARTBEAT, self._heartbeat, request, context, self._authorizer)

    async def StartTask(self, request: tasks_pb2.TaskReport, context: Context) -> tasks_pb2.TaskResponse:
        return await serve_unary_async(START, self._start, request, context, self._authorizer)

    async def CompleteTask(self, request: tasks_pb2.CompleteTaskRequest, context: Context) -> tasks_pb2.TaskResponse:
        return await serve_unary_async(COMPLETE, self._complete, request, context, self._authorizer)

    async def CancelTask(self, request: tasks_pb2.OperatorTaskRequest, context: Context) -> tasks_pb2.TaskResponse:
        return await serve_unary(CANCEL, self._cancel, request, context, self._authorizer)

    async def RequeueTask(self, request: tasks_pb2.OperatorTaskRequest, context: Context) -> tasks_pb2.TaskResponse:
        return await serve_unary(REQUEUE, self._requeue, request, context, self._authorizer)

    async def ListTasks(self, request: tasks_pb2.ListTasksRequest, context: Context) -> tasks_pb2.ListTasksResponse:
        return await serve_unary(LIST, self._list, request, context, self._authorizer)

    async def ShowTask(self, request: tasks_pb2.ShowTaskRequest, context: Context) -> tasks_pb2.ShowTaskResponse:
        return await serve_unary(SHOW, self._show, request, context, self._authorizer)

    async def GetFencingKey(
        self, request: tasks_pb2.GetFencingKeyRequest, context: Context
    ) -> tasks_pb2.GetFencingKeyResponse:
        return await serve_unary(FENCING_KEY, self._fencing_key, request, context, self._authorizer)

    def _fencing_key(self, request: tasks_pb2.GetFencingKeyRequest, caller: Caller) -> tasks_pb2.GetFencingKeyResponse:
        raw = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return tasks_pb2.GetFencingKeyResponse(ed25519_public_key=raw)

    def _submit(self, request: tasks_pb2.SubmitTaskRequest, caller: Caller) -> tasks_pb2.SubmitTaskResponse:
        submission = Submission(
            kind=request.kind,
            workflow_id=request.workflow_id,
            input_json=request.input_json,
            idempotency_key=request.idempotency_key,
            max_attempts=request.max_attempts,
            lease_ttl_s=request.lease_ttl.ToTimedelta().total_seconds() if request.HasField("lease_ttl") else 0.0,
        )
        task, created = self._queue.submit(submission, _operator(caller))
        return tasks_pb2.SubmitTaskResponse(task=task_to_proto(task), created=created)

    async def _lease(self, request: tasks_pb2.LeaseTaskRequest, caller: Caller) -> tasks_pb2.LeaseTaskResponse:
        kinds = tuple(request.kinds)
        if not kinds or len(kinds) > MAX_KINDS:
            raise InvalidInput("kinds", f"must name 1 to {MAX_KINDS} task kinds")
        holder = await self._holder(request.instance_id, caller, "lease tasks")
        instance = await self._catalog.instance(holder.instance_id)
        for kind in kinds:
            if instance is None or not instance.serves(kind):
                raise PermissionDenied(
                    f"instance {holder.instance_id} of agent {holder.agent} does not serve {kind!r}, so it may not "
                    "lease tasks of that kind (a kind is a capability the instance registers)"
                )
        task = self._queue.lease(holder, kinds)
        return self._leased(task)

    async def _heartbeat(self, request: tasks_pb2.TaskReport, caller: Caller) -> tasks_pb2.LeaseTaskResponse:
        holder = await self._holder(request.instance_id, caller, "heartbeat tasks")
        return self._leased(self._queue.heartbeat(request.task_id, holder, request.fencing_token))

    async def _start(self, request: tasks_pb2.TaskReport, caller: Caller) -> tasks_pb2.TaskResponse:
        holder = await self._holder(request.instance_id, caller, "start tasks")
        return tasks_pb2.TaskResponse(
            task=task_to_proto(self._queue.start(request.task_id, holder, request.fencing_token))
        )

    async def _complete(self, request: tasks_pb2.CompleteTaskRequest, caller: Caller) -> tasks_pb2.TaskResponse:
        holder = await self._holder(request.instance_id, caller, "complete tasks")
        task = self._queue.complete(
            request.task_id,
            holder,
            request.fencing_token,
            succeeded=request.succeeded,
            result_json=request.result_json,
            error=request.error,
        )
        return tasks_pb2.TaskResponse(task=task_to_proto(task))

    def _cancel(self, request: tasks_pb2.OperatorTaskRequest, caller: Caller) -> tasks_pb2.TaskResponse:
        task = self._queue.cancel(request.task_id, _operator(caller), request.reason)
        return tasks_pb2.TaskResponse(task=task_to_proto(task))

    def _requeue(self, request: tasks_pb2.OperatorTaskRequest, caller: Caller) -> tasks_pb2.TaskResponse:
        task = self._queue.requeue(request.task_id, _operator(caller), request.reason)
        return tasks_pb2.TaskResponse(task=task_to_proto(task))

    def _list(self, request: tasks_pb2.ListTasksRequest, caller: Caller) -> tasks_pb2.ListTasksResponse:
        where = TaskFilter(
            states=(request.state,) if request.state else (),
            kind=request.kind,
            workflow_id=request.workflow_id,
            holder=request.holder,
            limit=request.limit or DEFAULT_LIST,
        )
        return tasks_pb2.ListTasksResponse(tasks=[task_to_proto(t) for t in self._queue.find(where)])

    def _show(self, request: tasks_pb2.ShowTaskRequest, caller: Caller) -> tasks_pb2.ShowTaskResponse:
        task, transitions = self._queue.show(request.task_id)
        return tasks_pb2.ShowTaskResponse(
            task=task_to_proto(task), transitions=[transition_to_proto(t) for t in transitions]
        )

    async def _holder(self, instance_id: str, caller: Caller, action: str) -> Holder:
        """The caller's instance: registered, and of the agent the caller's SVID names."""
        if not instance_id or len(instance_id) > MAX_ID_CHARS:
            raise InvalidInput("instance_id", f"is required, at most {MAX_ID_CHARS} characters")
        instance = await self._catalog.instance(instance_id)
        if instance is None:
            raise UnknownInstance(instance_id)
        identity = require_agent(caller, instance.agent, action)
        return Holder(instance_id=instance_id, agent=identity.name)

    def _leased(self, task: TaskRow | None) -> tasks_pb2.LeaseTaskResponse:
        if task is None:
            return tasks_pb2.LeaseTaskResponse()
        fence = task_fence.Fence(
            task_id=task.id,
            token=task.fencing_token,
            holder_instance_id=task.holder_instance_id,
            holder_agent=task.holder_agent,
            lease_expires_at=task.lease_expires_at,
        )
        return tasks_pb2.LeaseTaskResponse(task=task_to_proto(task), signed_token=task_fence.sign(self._key, fence))


def _operator(caller: Caller) -> str:
    """The credential's identity, with the user name the CLI claims in parentheses (never trusted)."""
    actor = caller.operator_id or "operator"
    return f"{actor} ({caller.claimed_user})" if caller.claimed_user else actor


def task_to_proto(task: TaskRow) -> tasks_pb2.Task:
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


def transition_to_proto(transition: TransitionRow) -> tasks_pb2.TaskTransition:
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
