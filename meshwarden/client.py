"""Call capabilities through your own sidecar, async (`Client`) or blocking (`SyncClient`).

    async with meshwarden.Client("127.0.0.1:7410") as mesh:
        result = await mesh.invoke("billing.refund", {"amount": 50}, version="^2", timeout=5)
        print(result.value, result.agent, result.version)

Errors are the classes of meshwarden.errors (PolicyDenied, UnknownCapability, ...), the
same ones the sidecar raised, with their data, rebuilt from the structured status details
(meshwarden.error_status); a kind this version does not know keeps its kind (Unclassified).

Every call carries the current W3C trace context (meshwarden.trace_context), so a call made
inside a handler, or inside a span of your own tracing, continues that trace.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict, Unpack

import grpc

from meshwarden import outcomes, session_labels
from meshwarden.error_status import from_rpc_error
from meshwarden.errors import DeadlineExceeded, MeshError, PeerUnavailable
from meshwarden.trace_context import outgoing_metadata
from meshwarden.usage import Usage
from meshwarden.v1 import receipts_pb2, sidecar_pb2, sidecar_pb2_grpc, tasks_pb2

OUTCOME_TIMEOUT_S = 10.0


class SidecarUnreachable(PeerUnavailable):
    """The agent's own sidecar did not answer: nothing was sent anywhere."""

    kind = "sidecar_unreachable"


@dataclass(frozen=True, slots=True)
class Result:
    raw: bytes  # the result as UTF-8 JSON text, exactly as the callee produced it
    agent: str
    version: str
    instance_id: str
    call_id: str
    usage: Usage | None = None  # what the callee reported the call consumed; None when it reported nothing

    @property
    def value(self) -> Any:
        return json.loads(self.raw)


def encode(payload: object) -> bytes:
    """JSON text of the arguments; bytes are taken as JSON text already."""
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class CallOptions(TypedDict, total=False):
    """What a call may say besides capability, payload and timeout: the keyword arguments of
    `invoke`, and the one list `request` encodes (add a field here and there, nowhere else)."""

    version: str | None  # a semver range of the callee, npm syntax ("^2.3")
    schema_hash: str | None  # the callee's contract the caller was written against
    session_id: str | None
    workflow_id: str | None
    # Who the session is started for ("user:alice@example.com"), said where it enters the mesh;
    # the sidecars carry it to every later call of the session (leave it out below the entry).
    on_behalf_of: str | None
    # What the session works on ({"repository": "acme/api", "resource": "db-prod"}), said where
    # it enters the mesh: at most 8, keys [a-z][a-z0-9_.-]{0,31}, values 1-128 printable
    # characters (InvalidLabels, a ValueError, otherwise). The sidecars carry the first ones.
    session_labels: Mapping[str, str] | None
    cost_estimate_micro_usd: int | None  # policies see it; absent is not zero
    idempotent: bool  # True (default): a fresh idempotency key, so the mesh may retry the call
    idempotency_key: str | None  # reuse your own key across calls
    parent_call_id: str | None  # the call being handled (a CallContext sets it)
    task_token: bytes | None  # the signed fencing claim of the task the call works on (a TaskContext sets it)
    # A call that needs a person's approval waits for it within the timeout (True, default),
    # or fails at once with errors.ApprovalPending carrying the approval id (False).
    wait_for_approval: bool
    approval_id: str | None  # retry a call with the approval ApprovalPending gave for it


def request(capability: str, payload: object, **options: Unpack[CallOptions]) -> sidecar_pb2.InvokeRequest:
    """The InvokeRequest for a call: the SDK's one encoder of it."""
    unknown = options.keys() - CallOptions.__optional_keys__
    if unknown:  # **options would take a misspelt keyword silently
        raise TypeError(
            f"invoke() got unexpected keyword arguments {sorted(unknown)}; see meshwarden.client.CallOptions"
        )
    key = options.get("idempotency_key") or (uuid.uuid4().hex if options.get("idempotent", True) else "")
    message = sidecar_pb2.InvokeRequest(
        capability=capability,
        payload_json=encode(payload),
        version_range=options.get("version") or "",
        schema_hash=options.get("schema_hash") or "",
        session_id=options.get("session_id") or "",
        workflow_id=options.get("workflow_id") or "",
        idempotency_key=key,
        parent_call_id=options.get("parent_call_id") or "",
        task_token=options.get("task_token") or b"",
        on_behalf_of=options.get("on_behalf_of") or "",
        session_labels=dict(session_labels.checked(options.get("session_labels"))),
    )
    cost = options.get("cost_estimate_micro_usd")
    if cost is not None:  # policies see it; absent is not zero
        message.cost_estimate_micro_usd = cost
    return message


def approval_metadata(**options: Unpack[CallOptions]) -> tuple[tuple[str, str], ...]:
    """The approval options travel as request metadata (the HTTP gateway reads the same headers)."""
    found: list[tuple[str, str]] = []
    if not options.get("wait_for_approval", True):
        found.append(("x-meshwarden-approval-wait", "none"))
    approval_id = options.get("approval_id")
    if approval_id:
        found.append(("x-meshwarden-approval-id", approval_id))
    return tuple(found)


def to_result(reply: sidecar_pb2.InvokeResponse) -> Result:
    usage = Usage.from_proto(reply.usage) if reply.HasField("usage") else None
    return Result(reply.result_json, reply.agent, reply.version, reply.instance_id, reply.call_id, usage)


def outcome_request(session_id: str, outcome: str, detail: str) -> receipts_pb2.ReportOutcomeRequest:
    """The report, checked before it is sent; ValueError naming the argument that is wrong."""
    found = outcomes.problem(session_id, outcome, detail)
    if found is not None:
        raise ValueError(f"{found[0]} {found[1]}")
    return receipts_pb2.ReportOutcomeRequest(session_id=session_id, outcome=outcome, detail=detail)


def to_error(err: grpc.RpcError, sidecar: str) -> MeshError:
    """The MeshError the sidecar sent, or SidecarUnreachable when the sidecar itself failed."""
    sent = from_rpc_error(err)
    if sent is not None:
        return sent
    if isinstance(err, (grpc.aio.AioRpcError, grpc.Call)):
        if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded(
                f"deadline exceeded: no answer within the call's timeout (through sidecar {sidecar})"
            )
        return SidecarUnreachable(f"sidecar at {sidecar} did not answer: {err.code().name}: {err.details()}")
    return SidecarUnreachable(f"sidecar at {sidecar} did not answer: {err}")


def api_token_metadata(api_token: str | None) -> tuple[tuple[str, str], ...]:
    """The local API token as call metadata: given, else MESHWARDEN_SIDECAR_TOKEN, else the file
    named by MESHWARDEN_SIDECAR_TOKEN_FILE, else none (a development sidecar needs none)."""
    token = api_token or os.environ.get("MESHWARDEN_SIDECAR_TOKEN", "")
    if not token and os.environ.get("MESHWARDEN_SIDECAR_TOKEN_FILE"):
        token = Path(os.environ["MESHWARDEN_SIDECAR_TOKEN_FILE"]).read_text().strip()
    return (("authorization", f"Bearer {token}"),) if token else ()


class Client:
    """Async client of the local sidecar. One per process is plenty; it is safe to share.

    `sidecar` is HOST:PORT or unix:PATH; `api_token` is needed when the sidecar requires one.
    """

    def __init__(self, sidecar: str, *, api_token: str | None = None, max_message_bytes: int = 5 * 1024 * 1024) -> None:
        self.sidecar = sidecar
        self.metadata = api_token_metadata(api_token)
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        self._channel = grpc.aio.insecure_channel(sidecar, options=options)
        self._stub = sidecar_pb2_grpc.SidecarStub(self._channel)

    async def invoke(
        self, capability: str, payload: object, *, timeout: float | None = None, **options: Unpack[CallOptions]
    ) -> Result:
        """`options` are CallOptions: version=, schema_hash=, session_id=, workflow_id=,
        cost_estimate_micro_usd=, idempotent=, idempotency_key=, parent_call_id=.
        `idempotent=True` (the default) gives the call a fresh idempotency key, so the sidecars
        may retry it after a transient failure and the callee runs it at most once; pass
        `idempotency_key=` to reuse your own across calls, or `idempotent=False` for none.
        `parent_call_id=` names the call being handled (a CallContext sets it for you).
        `wait_for_approval=False` answers a call held for a person's approval at once with
        errors.ApprovalPending (its approval_id); retry then with `approval_id=`."""
        req = request(capability, payload, **options)
        try:
            metadata = self.metadata + outgoing_metadata() + approval_metadata(**options)
            reply = await self._stub.Invoke(req, timeout=timeout, metadata=metadata)
        except grpc.aio.AioRpcError as err:
            raise to_error(err, self.sidecar) from err
        return to_result(reply)

    async def report_outcome(
        self, session_id: str, outcome: outcomes.OutcomeName, detail: str = "", *, timeout: float = OUTCOME_TIMEOUT_S
    ) -> None:
        """Tells the registry, through the sidecar, how a session ended: "succeeded", "failed" or
        "abandoned". Once per session: a second report raises OutcomeAlreadyReported."""
        req = outcome_request(session_id, outcome, detail)
        try:
            await self._stub.ReportOutcome(req, timeout=timeout, metadata=self.metadata)
        except grpc.aio.AioRpcError as err:
            raise to_error(err, self.sidecar) from err

    async def submit_task(
        self,
        kind: str,
        input: object,
        *,
        workflow_id: str = "",
        idempotency_key: str = "",
        max_attempts: int = 0,
        lease_ttl_s: float = 0.0,
        timeout: float = OUTCOME_TIMEOUT_S,
    ) -> tasks_pb2.SubmitTaskResponse:
        """Queues a task of `kind` with `input` (JSON-encoded here) as this agent. With an
        `idempotency_key` already used, the answer is the first task (`created` False)."""
        request = tasks_pb2.SubmitTaskRequest(
            kind=kind,
            workflow_id=workflow_id,
            input_json=json.dumps(input, separators=(",", ":")),
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
        )
        if lease_ttl_s:
            request.lease_ttl.FromMilliseconds(int(lease_ttl_s * 1000))
        reply: tasks_pb2.SubmitTaskResponse = await self._task_call(self._stub.SubmitTask, request, timeout)
        return reply

    async def lease_task(
        self, *kinds: str, start: bool = False, timeout: float = OUTCOME_TIMEOUT_S
    ) -> tasks_pb2.LeaseTaskResponse:
        """The oldest queued task of `kinds`, now held by this agent's instance (its `task` field
        is unset when none is queued); with `start`, already RUNNING (no start_task needed).
        Keep it with heartbeat_task within its lease_ttl."""
        reply: tasks_pb2.LeaseTaskResponse = await self._task_call(
            self._stub.LeaseTask, tasks_pb2.LeaseTaskRequest(kinds=kinds, start=start), timeout
        )
        return reply

    async def heartbeat_task(
        self, task_id: str, fencing_token: int, *, timeout: float = OUTCOME_TIMEOUT_S
    ) -> tasks_pb2.LeaseTaskResponse:
        """Extends the lease; LeaseLost when the token is no longer current (stop working on it)."""
        report = tasks_pb2.TaskReport(task_id=task_id, fencing_token=fencing_token)
        reply: tasks_pb2.LeaseTaskResponse = await self._task_call(self._stub.HeartbeatTask, report, timeout)
        return reply

    async def start_task(
        self, task_id: str, fencing_token: int, *, timeout: float = OUTCOME_TIMEOUT_S
    ) -> tasks_pb2.Task:
        report = tasks_pb2.TaskReport(task_id=task_id, fencing_token=fencing_token)
        reply: tasks_pb2.TaskResponse = await self._task_call(self._stub.StartTask, report, timeout)
        return reply.task

    async def complete_task(
        self,
        task_id: str,
        fencing_token: int,
        *,
        succeeded: bool,
        result: object = None,
        error: str = "",
        timeout: float = OUTCOME_TIMEOUT_S,
    ) -> tasks_pb2.Task:
        request = tasks_pb2.CompleteTaskRequest(
            task_id=task_id,
            fencing_token=fencing_token,
            succeeded=succeeded,
            result_json="" if result is None else json.dumps(result),
            error=error,
        )
        reply: tasks_pb2.TaskResponse = await self._task_call(self._stub.CompleteTask, request, timeout)
        return reply.task

    async def _task_call(self, rpc: Any, request: Any, timeout: float) -> Any:
        try:
            return await rpc(request, timeout=timeout, metadata=self.metadata)
        except grpc.aio.AioRpcError as err:
            raise to_error(err, self.sidecar) from err

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class SyncClient:
    """Blocking client of the local sidecar, for scripts and synchronous agents."""

    def __init__(self, sidecar: str, *, api_token: str | None = None, max_message_bytes: int = 5 * 1024 * 1024) -> None:
        self.sidecar = sidecar
        self.metadata = api_token_metadata(api_token)
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        self._channel = grpc.insecure_channel(sidecar, options=options)
        self._stub = sidecar_pb2_grpc.SidecarStub(self._channel)

    def invoke(
        self, capability: str, payload: object, *, timeout: float | None = None, **options: Unpack[CallOptions]
    ) -> Result:
        """`Client.invoke`, blocking."""
        req = request(capability, payload, **options)
        try:
            metadata = self.metadata + outgoing_metadata() + approval_metadata(**options)
            reply = self._stub.Invoke(req, timeout=timeout, metadata=metadata)
        except grpc.RpcError as err:
            raise to_error(err, self.sidecar) from err
        return to_result(reply)

    def report_outcome(
        self, session_id: str, outcome: outcomes.OutcomeName, detail: str = "", *, timeout: float = OUTCOME_TIMEOUT_S
    ) -> None:
        """`Client.report_outcome`, blocking."""
        req = outcome_request(session_id, outcome, detail)
        try:
            self._stub.ReportOutcome(req, timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as err:
            raise to_error(err, self.sidecar) from err

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
