"""Relay an agent's task calls (submit, lease, heartbeat, start, complete) to the registry's
Tasks service over mTLS, as this sidecar's SVID and for this sidecar's instance.

The instance id is the sidecar's own: an agent that names another is refused here, before
anything leaves. The registry decides everything else (registry.task_queue); its refusals come
back as typed mesh errors (LeaseLost, UnknownTask, BadPayload, ...), never as parsed text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import grpc

from meshwarden import error_status
from meshwarden.errors import BadPayload, MeshError, NotRegistered, PolicyDenied, RegistryUnavailable
from meshwarden.sidecar.registry_link import RegistryLink
from meshwarden.v1 import tasks_pb2

TIMEOUT_S: Final = 5.0
T = TypeVar("T")


class TaskRelay:
    def __init__(
        self,
        registry: RegistryLink,
        instance_id: Callable[[], str],
        learn: Callable[[bytes], None] = lambda _: None,
        may_submit: Callable[[tasks_pb2.SubmitTaskRequest], None] = lambda _: None,
    ) -> None:
        # learn: each claim the registry issues here (sidecar.stages.task_fence.Fences.learn);
        # may_submit: raises when the agent may not queue that task (sidecar.task_submission_policy)
        self._registry, self._instance_id, self._learn = registry, instance_id, learn
        self._may_submit = may_submit

    async def lease(self, request: tasks_pb2.LeaseTaskRequest, timeout_s: float | None) -> tasks_pb2.LeaseTaskResponse:
        mine = tasks_pb2.LeaseTaskRequest(
            instance_id=self._own(request.instance_id),
            kinds=request.kinds,
            max_tasks=request.max_tasks,
            start=request.start,
        )
        leased: tasks_pb2.LeaseTaskResponse = await self._relay(
            "lease", lambda t: self._registry.tasks().LeaseTask(mine, timeout=t), timeout_s
        )
        self._learn(leased.signed_token)
        for lease in leased.more:
            self._learn(lease.signed_token)
        return leased

    async def heartbeat(self, request: tasks_pb2.TaskReport, timeout_s: float | None) -> tasks_pb2.LeaseTaskResponse:
        report = self._report(request)
        renewed: tasks_pb2.LeaseTaskResponse = await self._relay(
            "heartbeat", lambda t: self._registry.tasks().HeartbeatTask(report, timeout=t), timeout_s
        )
        self._learn(renewed.signed_token)
        return renewed

    async def start(self, request: tasks_pb2.TaskReport, timeout_s: float | None) -> tasks_pb2.TaskResponse:
        report = self._report(request)
        return await self._relay("start", lambda t: self._registry.tasks().StartTask(report, timeout=t), timeout_s)

    async def complete(self, request: tasks_pb2.CompleteTaskRequest, timeout_s: float | None) -> tasks_pb2.TaskResponse:
        mine = tasks_pb2.CompleteTaskRequest()
        mine.CopyFrom(request)
        mine.instance_id = self._own(request.instance_id)
        return await self._relay("complete", lambda t: self._registry.tasks().CompleteTask(mine, timeout=t), timeout_s)

    async def submit(
        self, request: tasks_pb2.SubmitTaskRequest, timeout_s: float | None
    ) -> tasks_pb2.SubmitTaskResponse:
        """Queues a task as this sidecar's agent, if the active policy lets it call the kind
        (the registry checks every field)."""
        self._may_submit(request)
        submitted: tasks_pb2.SubmitTaskResponse = await self._relay(
            "submit", lambda t: self._registry.tasks().SubmitTask(request, timeout=t), timeout_s
        )
        return submitted

    def _report(self, request: tasks_pb2.TaskReport) -> tasks_pb2.TaskReport:
        return tasks_pb2.TaskReport(
            task_id=request.task_id, instance_id=self._own(request.instance_id), fencing_token=request.fencing_token
        )

    def _own(self, named: str) -> str:
        own = self._instance_id()
        if named and named != own:
            raise BadPayload(f"instance_id {named!r} is not this sidecar's instance ({own}); leave it empty")
        return own

    @staticmethod
    async def _relay(action: str, send: Callable[[float], Awaitable[T]], timeout_s: float | None) -> T:
        try:
            return await send(min(timeout_s or TIMEOUT_S, TIMEOUT_S))
        except grpc.aio.AioRpcError as err:
            raise _translate(err, action) from err


def _translate(err: grpc.aio.AioRpcError, action: str) -> MeshError:
    typed = error_status.from_rpc_error(err)  # lease_lost, invalid_task_transition, unknown_task
    if typed is not None:
        return typed
    code, details = err.code(), err.details() or ""
    if code == grpc.StatusCode.NOT_FOUND:  # the registry does not know this sidecar's instance
        return NotRegistered(f"cannot {action} tasks: {details} (the agent registers the kinds it serves first)")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return BadPayload(f"the registry refused the task {action}: {details}")
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return PolicyDenied(f"the registry refused the task {action}: {details}")
    return RegistryUnavailable(f"could not {action} the task at the registry ({code.name}: {details}); try again")
