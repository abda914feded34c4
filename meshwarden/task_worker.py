"""The SDK's task worker: `@agent.task("kind")` handlers take tasks through the sidecar, one at
a time per kind, and keep their lease alive while they run.

For each task: lease and start in one call (the registry moves it to RUNNING with the lease),
run the handler with a TaskContext while a heartbeat goes out every third of the lease TTL,
then complete (succeeded with the handler's result, or failed
with its error). When a heartbeat answers LeaseLost, the lease has passed to another holder:
the handler is cancelled (it sees asyncio.CancelledError) and nothing more is reported. Before
a side effect, a handler can `await ctx.confirm_lease()`: a heartbeat that raises LeaseLost when
the task is no longer its own (one registry round trip; see README "Tasks").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, Unpack

from meshwarden import model_clients
from meshwarden.client import CallOptions, Client, Result
from meshwarden.errors import LeaseLost, MeshError
from meshwarden.v1 import tasks_pb2

log = logging.getLogger(__name__)

DEFAULT_POLL_S: Final = 0.5


@dataclass
class TaskContext:
    """What a task handler knows about the task it holds; `fencing_token` fences its writes."""

    task_id: str
    kind: str
    workflow_id: str
    attempt: int
    fencing_token: int
    signed_token: bytes  # the registry's signed claim (meshwarden.task_fence), renewed by heartbeats
    _client: Client = field(repr=False)
    lost: bool = False  # set when a heartbeat learned the lease passed to another holder
    _gateway: str = field(default="", repr=False)  # the sidecar's HTTP gateway, "" for the default

    def gateway_headers(self) -> dict[str, str]:
        """Headers for a call through the sidecar's gateway (model /v1/, tools /mcp, e.g. an
        `mcp` client's) made for this task: the local API token, the workflow, the task and its
        signed token. They stay valid for the whole lease: the sidecar learns each renewal
        from the heartbeats it relays, and refuses the call ("lease lost") once the lease
        lapsed or another holder took the task."""
        headers = self._task_headers()
        token = self._local_token()
        if token:
            headers["authorization"] = f"Bearer {token}"
        return headers

    @property
    def gateway_url(self) -> str:
        return model_clients.gateway_url(self._gateway)

    def openai(self, **options: Any) -> Any:
        """An official `openai.AsyncOpenAI` client (`sync=True`: `openai.OpenAI`) whose calls go
        through the sidecar's model gateway for this task, carrying its signed token, so the
        gateway refuses them ("lease lost") once another holder has the task."""
        return model_clients.openai_client(self.gateway_url, self._local_token(), self._task_headers(), **options)

    def anthropic(self, **options: Any) -> Any:
        """An official `anthropic.AsyncAnthropic` client (`sync=True`: `anthropic.Anthropic`),
        through the gateway for this task like `openai()`."""
        return model_clients.anthropic_client(self.gateway_url, self._local_token(), self._task_headers(), **options)

    def _task_headers(self) -> dict[str, str]:
        headers = model_clients.attribution(workflow_id=self.workflow_id, task_id=self.task_id)
        headers[model_clients.TASK_TOKEN_HEADER] = model_clients.task_token_header(self.signed_token)
        return headers

    def _local_token(self) -> str:
        for name, value in self._client.metadata:
            if name == "authorization":
                return value.removeprefix("Bearer ")
        return ""

    async def invoke(self, capability: str, payload: object, **options: Unpack[CallOptions]) -> Result:
        """A call made for this task: it carries the task's signed token, so the sidecar refuses
        it (LeaseLost) once the token is no longer current, without asking the registry."""
        options["task_token"] = self.signed_token
        options.setdefault("workflow_id", self.workflow_id)
        return await self._client.invoke(capability, payload, **options)

    async def confirm_lease(self) -> None:
        """A heartbeat now: returns while this holder's token is current, else raises LeaseLost."""
        reply = await self._client.heartbeat_task(self.task_id, self.fencing_token)
        self.signed_token = reply.signed_token


TaskHandler = Callable[[Any, TaskContext], Coroutine[Any, Any, Any]]


async def work_forever(
    client: Client, kind: str, handler: TaskHandler, poll_s: float = DEFAULT_POLL_S, gateway: str = ""
) -> None:
    """Takes tasks of `kind` until cancelled; a failed lease is logged and tried again."""
    while True:
        try:
            leased = await client.lease_task(kind, start=True)
        except MeshError as err:
            log.warning("could not lease a %s task: %s", kind, err)
            await asyncio.sleep(poll_s)
            continue
        if not leased.HasField("task"):
            await asyncio.sleep(poll_s)
            continue
        await run_one(client, leased, handler, gateway)


async def run_one(client: Client, leased: tasks_pb2.LeaseTaskResponse, handler: TaskHandler, gateway: str = "") -> None:
    task = leased.task
    ctx = TaskContext(
        task_id=task.id,
        kind=task.kind,
        workflow_id=task.workflow_id,
        attempt=task.attempts,
        fencing_token=task.fencing_token,
        signed_token=leased.signed_token,
        _client=client,
        _gateway=gateway,
    )
    try:
        if task.state != tasks_pb2.TASK_STATE_RUNNING:  # leased without start
            await client.start_task(task.id, task.fencing_token)
    except MeshError as err:
        log.warning("task %s could not start: %s", task.id, err)
        return
    work = asyncio.create_task(handler(json.loads(task.input_json), ctx))
    beats = asyncio.create_task(_heartbeat(ctx, task.lease_ttl.ToMilliseconds() / 1000, work))
    try:
        result = await work
    except asyncio.CancelledError:
        if ctx.lost:
            log.warning("task %s: lease lost (token %d); its handler was stopped", task.id, ctx.fencing_token)
            return
        raise
    except Exception as exc:  # noqa: BLE001 -- the handler's failure is the task's outcome
        await _complete(client, ctx, succeeded=False, error=f"{type(exc).__name__}: {exc}"[:1000])
        return
    finally:
        beats.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await beats
    await _complete(client, ctx, succeeded=True, result=result)


async def _heartbeat(ctx: TaskContext, ttl_s: float, work: asyncio.Task[Any]) -> None:
    while True:
        await asyncio.sleep(max(ttl_s / 3, 0.05))
        try:
            await ctx.confirm_lease()
        except LeaseLost:
            ctx.lost = True
            work.cancel()
            return
        except MeshError as err:  # the registry or sidecar is briefly away: the lease may still hold
            log.warning("task %s heartbeat failed: %s", ctx.task_id, err)


async def _complete(client: Client, ctx: TaskContext, *, succeeded: bool, result: Any = None, error: str = "") -> None:
    try:
        await client.complete_task(ctx.task_id, ctx.fencing_token, succeeded=succeeded, result=result, error=error)
    except MeshError as err:
        log.warning("task %s: completion refused: %s", ctx.task_id, err)
