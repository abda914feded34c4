"""Write an agent in a few lines: declare capabilities, serve them, call others.

    agent = meshwarden.Agent(version="1.0.0", sidecar="127.0.0.1:7410", listen="127.0.0.1:7412")

    @agent.capability("echo", input_schema={"type": "object"})
    async def echo(args: dict, ctx: meshwarden.CallContext) -> dict:
        return {"echo": args}

    agent.run()

`listen` is the agent's callback endpoint, which the agent tells its sidecar when it
registers. Left out, it is a Unix socket in a fresh directory only this user can enter (file
mode 0600): no other user on the host can reach it. On TCP, or on any socket, every call must
carry the secret this agent registered with its sidecar (meshwarden.callback_auth); calls
without it are refused, so no other local process can deliver a call with a forged caller.
The agent's name is the sidecar's --agent: the agent cannot choose who it is.

Handlers may be `async def` (they can `await ctx.invoke(...)`) or plain `def` (run in a
worker thread; they can call `ctx.invoke_sync(...)`). Raise `HandlerError` to refuse a call
with a status of your choice (UNAVAILABLE asks the mesh to retry a keyed call on another
instance); any other exception is reported as INTERNAL and logged here. Failures go to the
sidecar as structured errors (meshwarden.error_status), so it tells the agent's answer from
an agent it could not reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import inspect
import itertools
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NoReturn

import grpc

from meshwarden import callback_auth, error_status, model_clients, outcomes, task_worker
from meshwarden.addresses import parse_host_port
from meshwarden.client import Client, Result, SyncClient, api_token_metadata
from meshwarden.errors import AgentFailed, MeshError
from meshwarden.ready import announce_ready
from meshwarden.standard_services import add_standard_services, set_serving
from meshwarden.stop_signals import stop_on_signals
from meshwarden.task_worker import TaskHandler
from meshwarden.tasks import cancel_all, supervise
from meshwarden.trace_context import attach_headers, detach, headers_from_metadata
from meshwarden.usage import Usage, UsageTally, checked_usage
from meshwarden.v1 import agent_pb2, agent_pb2_grpc, catalog_pb2, sidecar_pb2, sidecar_pb2_grpc

log = logging.getLogger(__name__)
REREGISTER_WAIT_S = 60.0
SIDECAR_CHECK_S = 1.0
CALLBACK_TOKEN_ENV = "MESHWARDEN_AGENT_CALLBACK_TOKEN"

AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["Agent"].full_name
Handler = Callable[[Any, "CallContext"], Any]


class HandlerError(Exception):
    """Raise in a handler to fail the call with `code` and a message meant for the caller."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> None:
        super().__init__(message)
        self.message, self.code = message, code


@dataclass(frozen=True)
class CallContext:
    call_id: str
    capability: str
    caller_agent: str
    caller_spiffe_id: str
    session_id: str
    workflow_id: str
    attempt: int
    deadline: float | None  # time.monotonic() seconds; None when the caller set none
    _client: Client = field(repr=False)
    _sidecar: str = field(repr=False)
    _api_token: str | None = field(default=None, repr=False)
    # The caller's key for this call ("" for none); nested calls derive theirs from it.
    idempotency_key: str = ""
    _nested_calls: Iterator[int] = field(default_factory=itertools.count, repr=False)
    _usage: UsageTally = field(default_factory=UsageTally, repr=False)
    # The call the caller was handling when it made this one ("" at the top of a session).
    parent_call_id: str = ""
    # The task the call works on and its fencing token, verified by this agent's sidecar ("" and
    # 0: none): fence this handler's own storage writes with it (a write under a lower token loses).
    task_id: str = ""
    fencing_token: int = 0
    _task_token: bytes = field(default=b"", repr=False)  # the signed claim behind task_id, for the gateway
    # Who the session was started for, as the sidecars carried it from its entry point ("" for
    # none). Informational: this agent's sidecar puts it on every call of the session itself.
    on_behalf_of: str = ""
    # The free labels the session was started with (repository, resource...), as carried.
    session_labels: Mapping[str, str] = field(default_factory=dict)
    _gateway: str = field(default="", repr=False)  # the sidecar's model gateway, "" for the default
    # The agent's one blocking client (its channel shared by every plain-`def` handler's
    # calls); None: one of its own per call.
    _sync_client: Callable[[], SyncClient] | None = field(default=None, repr=False)

    def model_headers(self, task_id: str = "") -> dict[str, str]:
        """Headers that attribute a model call to this call's session and workflow and task
        (the one this call was made for, unless another is given), with this call as its
        parent: what `openai()` and `anthropic()` set. A call made for a task also carries the
        task's signed token, so the gateway refuses the model call once the task's lease is lost."""
        task = task_id or self.task_id
        headers = model_clients.attribution(self.session_id, self.workflow_id, task, self.call_id)
        if self._task_token and task == self.task_id:
            headers[model_clients.TASK_TOKEN_HEADER] = model_clients.task_token_header(self._task_token)
        return headers

    def openai(self, *, task_id: str = "", **options: Any) -> Any:
        """An official `openai.AsyncOpenAI` client (`sync=True`: `openai.OpenAI`) whose calls go
        through this agent's sidecar, attributed to this call's session and workflow. The
        sidecar holds the provider's key; the client carries only the local API token."""
        return model_clients.openai_client(
            model_clients.gateway_url(self._gateway), self._token(), self.model_headers(task_id), **options
        )

    def anthropic(self, *, task_id: str = "", **options: Any) -> Any:
        """An official `anthropic.AsyncAnthropic` client (`sync=True`: `anthropic.Anthropic`)
        through this agent's sidecar, attributed like `openai()`."""
        return model_clients.anthropic_client(
            model_clients.gateway_url(self._gateway), self._token(), self.model_headers(task_id), **options
        )

    def _token(self) -> str:
        metadata = api_token_metadata(self._api_token)
        return metadata[0][1].removeprefix("Bearer ") if metadata else ""

    def report_usage(
        self,
        *,
        model: str = "",
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: Decimal | int | float | str | None = None,
        cost_micro_usd: int | None = None,
    ) -> Usage:
        """Reports what handling this call consumed; it travels back with the result into both
        sidecars' receipts and the caller's `Result.usage`. Reports within one call add up.
        Give the cost as `cost_usd` (Decimal or str for exact cents) or `cost_micro_usd`.
        Raises ValueError for negative or non-integer token counts, or a negative cost.
        Returns the total reported so far."""
        self._usage.add(
            checked_usage(
                model=model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost_usd=cost_usd,
                cost_micro_usd=cost_micro_usd,
            )
        )
        total = self._usage.total
        if total is None:
            raise RuntimeError("a tally holds what was just added")
        return total

    @property
    def usage(self) -> Usage | None:
        """What this call reported so far (None: nothing)."""
        return self._usage.total

    async def report_outcome(self, outcome: outcomes.OutcomeName, detail: str = "", *, session_id: str = "") -> None:
        """Reports how this call's session (or `session_id`) ended: "succeeded", "failed" or
        "abandoned"; once per session (OutcomeAlreadyReported otherwise)."""
        await self._client.report_outcome(session_id or self.session_id, outcome, detail)

    def report_outcome_sync(self, outcome: outcomes.OutcomeName, detail: str = "", *, session_id: str = "") -> None:
        """`report_outcome` for plain-`def` handlers."""
        with self._blocking_client() as client:
            client.report_outcome(session_id or self.session_id, outcome, detail)

    # Set when the call is cancelled (its caller went away, or an operator's kill switch).
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancelled(self) -> bool:
        """Whether the call was cancelled. An async handler sees asyncio.CancelledError; a plain
        `def` handler, which runs in a worker thread and cannot be interrupted, should check this
        between steps and stop early."""
        return self._cancelled.is_set()

    def time_remaining(self) -> float | None:
        return None if self.deadline is None else max(self.deadline - time.monotonic(), 0.0)

    async def invoke(self, capability: str, payload: object, **options: Any) -> Result:
        """Calls another capability within this call: same session and workflow, and no more
        time than this call has left (unless `timeout` asks for less)."""
        return await self._client.invoke(capability, payload, **self._nested(capability, options))

    def invoke_sync(self, capability: str, payload: object, **options: Any) -> Result:
        """`invoke` for plain-`def` handlers, which run in a worker thread."""
        with self._blocking_client() as client:
            return client.invoke(capability, payload, **self._nested(capability, options))

    @contextlib.contextmanager
    def _blocking_client(self) -> Iterator[SyncClient]:
        """The agent's shared blocking client (left open), else one for this call only."""
        if self._sync_client is not None:
            yield self._sync_client()
            return
        with SyncClient(self._sidecar, api_token=self._api_token) as client:
            yield client

    def _nested(self, capability: str, options: dict[str, Any]) -> dict[str, Any]:
        remaining = self.time_remaining()
        if remaining is not None:
            options["timeout"] = min(options.get("timeout") or remaining, remaining)
        options.setdefault("session_id", self.session_id or None)
        options.setdefault("workflow_id", self.workflow_id or None)
        options.setdefault("parent_call_id", self.call_id or None)  # the session's timeline is a tree
        if self.idempotency_key and options.get("idempotent", True) and not options.get("idempotency_key"):
            # The nth call to a capability within this call: a retried parent replays the
            # same child keys, so the children it already ran are not run again.
            n = next(self._nested_calls)
            seed = f"{self.idempotency_key}\n{capability}\n{n}".encode()
            options["idempotency_key"] = hashlib.sha256(seed).hexdigest()[:32]
        return options


@dataclass(frozen=True)
class _Capability:
    name: str
    handler: Handler
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    description: str
    timeout_s: float | None = None

    def to_proto(self) -> catalog_pb2.Capability:
        return catalog_pb2.Capability(
            name=self.name,
            input_schema_json=json.dumps(self.input_schema) if self.input_schema is not None else "",
            output_schema_json=json.dumps(self.output_schema) if self.output_schema is not None else "",
            description=self.description,
            default_timeout_ms=round(self.timeout_s * 1000) if self.timeout_s is not None else 0,
        )


class Agent:
    def __init__(
        self,
        *,
        version: str,
        sidecar: str,
        listen: str | None = None,
        api_token: str | None = None,
        max_message_bytes: int = 5 * 1024 * 1024,
        gateway: str | None = None,
    ) -> None:
        """`listen`: HOST:PORT or unix:/path; None for a private Unix socket (see above).
        `api_token` is needed when the sidecar requires one (else MESHWARDEN_SIDECAR_TOKEN[_FILE]).
        `max_message_bytes` bounds what the callback endpoint accepts; keep it above the
        sidecar's --max-payload-bytes (default 4 MiB) plus envelope, as the default does.
        `gateway` is the sidecar's model gateway URL (http://HOST:PORT) for ctx.openai()."""
        self._private_dir = "" if listen is not None else tempfile.mkdtemp(prefix="meshwarden-agent-")  # 0700
        self.version, self.sidecar = version, sidecar
        self.listen = listen if listen is not None else f"unix:{self._private_dir}/agent.sock"
        # A harness that calls the agent directly (benchmarks/latency.py) sets the secret it presents.
        self._callback_token = os.environ.get(CALLBACK_TOKEN_ENV) or callback_auth.new_token()
        # The sidecar's model gateway (its --gateway-listen) for ctx.openai() and ctx.anthropic():
        # given, else MESHWARDEN_GATEWAY, else the sidecar's default.
        self.gateway = model_clients.gateway_url(gateway)
        self._api_token = api_token
        self._max_message_bytes = max_message_bytes
        self._client: Client | None = None  # grpc.aio channels belong to the loop that serves
        self._sync: SyncClient | None = None  # for plain-`def` handlers, made on first use
        self._sync_lock = threading.Lock()
        self.instance_id = ""
        self._registration_id = ""  # from RegisterAgentResponse; CheckRegistration compares it
        self.name = ""
        self.schema_hashes: dict[str, str] = {}
        self._capabilities: dict[str, _Capability] = {}
        self._server: grpc.aio.Server | None = None
        self._reregistration: asyncio.Task[None] | None = None
        self._task_handlers: dict[str, tuple[TaskHandler, float]] = {}
        self._task_workers: list[asyncio.Task[None]] = []

    @property
    def client(self) -> Client:
        """A client of this agent's sidecar, for calls made outside a handler."""
        if self._client is None:
            raise RuntimeError("the agent is not started: call start() or run() first")
        return self._client

    def sync_client(self) -> SyncClient:
        """The blocking client every plain-`def` handler's calls share (gRPC channels are
        thread-safe), made on first use and closed by stop()."""
        with self._sync_lock:
            if self._sync is None:
                self._sync = SyncClient(self.sidecar, api_token=self._api_token)
            return self._sync

    def capability(
        self,
        name: str,
        *,
        input_schema: dict[str, Any] | None = None,
        output_schema: dict[str, Any] | None = None,
        description: str = "",
        timeout_s: float | None = None,
    ) -> Callable[[Handler], Handler]:
        """`timeout_s` is the deadline callers get when they set none (else their sidecar's
        --default-timeout-s): how long this capability may reasonably take, at most an hour."""
        if timeout_s is not None and not 0.001 <= timeout_s <= 3600:
            raise ValueError(f"timeout_s of capability {name!r} must be from 0.001 to 3600 seconds, got {timeout_s}")

        def register(handler: Handler) -> Handler:
            if name in self._capabilities:
                raise ValueError(f"capability {name!r} is declared twice")
            self._capabilities[name] = _Capability(
                name, handler, input_schema, output_schema, description or (handler.__doc__ or "").strip(), timeout_s
            )
            return handler

        return register

    def task(self, kind: str, *, poll_s: float = task_worker.DEFAULT_POLL_S) -> Callable[[TaskHandler], TaskHandler]:
        """A handler of tasks of `kind`, taken from the registry's queue through the sidecar
        once the agent is registered (meshwarden.task_worker). The kind is registered as a
        capability too, since the registry leases only kinds an instance serves; a direct call
        of it is refused."""

        def register(handler: TaskHandler) -> TaskHandler:
            if kind in self._task_handlers:
                raise ValueError(f"task kind {kind!r} is declared twice")
            self._task_handlers[kind] = (handler, poll_s)

            async def direct(args: Any, ctx: CallContext) -> Any:
                raise HandlerError(
                    f"{kind} is a task kind: submit it (meshwarden tasks submit) rather than call it",
                    grpc.StatusCode.FAILED_PRECONDITION,
                )

            self.capability(kind, description=f"task kind {kind}")(direct)
            return handler

        return register

    async def start(self, *, register_timeout_s: float = 30.0) -> None:
        """Serves the callback endpoint, then registers with the sidecar (retrying while the
        sidecar is not up yet). Returns once the sidecar has accepted the registration."""
        self._client = Client(self.sidecar, api_token=self._api_token)
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self._max_message_bytes),
                ("grpc.max_send_message_length", self._max_message_bytes),
            ]
        )
        agent_pb2_grpc.add_AgentServicer_to_server(_Servicer(self), server)
        health = add_standard_services(server, [AGENT_SERVICE])
        try:
            port = server.add_insecure_port(self.listen)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self.listen}: {exc}; is the port in use?") from exc
        if not self.listen.startswith("unix:"):  # a TCP port 0 became a real port: say which
            self.listen = str(dataclasses.replace(parse_host_port(self.listen, what="listen"), port=int(port)))
        await server.start()
        if self.listen.startswith("unix:"):
            os.chmod(self.listen.removeprefix("unix:").removeprefix("//"), 0o600)  # this user only
        self._server = server
        await set_serving(health, [AGENT_SERVICE], True)
        await self._register(register_timeout_s)
        self._reregistration = asyncio.create_task(self._stay_registered(), name="meshwarden-stay-registered")
        for kind, (handler, poll_s) in self._task_handlers.items():
            worker = functools.partial(task_worker.work_forever, self.client, kind, handler, poll_s, self.gateway)
            self._task_workers.append(supervise(f"task-worker-{kind}", worker))

    async def stop(self) -> None:
        if self._reregistration is not None:
            self._reregistration.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reregistration
        await cancel_all(self._task_workers)
        self._task_workers.clear()
        if self._server is not None:
            await self._server.stop(grace=2.0)
        if self._client is not None:
            await self._client.close()
        with self._sync_lock:
            sync, self._sync = self._sync, None
        if sync is not None:
            sync.close()
        if self._private_dir:
            shutil.rmtree(self._private_dir, ignore_errors=True)

    async def serve_forever(self, *, announce: bool = False) -> None:
        """Serves until SIGTERM or SIGINT. With `announce`, prints the ready line
        (meshwarden.ready) once registered, for supervisors that start agents on port 0."""
        await self.start()
        if announce:
            announce_ready("agent", listen=self.listen, instance_id=self.instance_id, agent=self.name)
        await stop_on_signals().wait()
        await self.stop()

    def run(self, *, announce: bool = False) -> None:
        """Blocks until SIGTERM or SIGINT."""
        asyncio.run(self.serve_forever(announce=announce))

    async def _stay_registered(self) -> None:
        """Registers again whenever the sidecar no longer holds this agent's registration: a
        restarted sidecar (its container restarted, say) knows nothing of it, nor does one that
        took the agent for gone. Asked every SIDECAR_CHECK_S (a check, not a stream: an open
        stream would hold up the sidecar's own shutdown). Asking by registration id, not by
        health, also catches a restart quicker than one check."""
        stub = sidecar_pb2_grpc.SidecarStub(self.client._channel)
        lost = False
        while True:
            await asyncio.sleep(SIDECAR_CHECK_S)
            try:
                reply = await stub.CheckRegistration(
                    sidecar_pb2.CheckRegistrationRequest(registration_id=self._registration_id),
                    timeout=SIDECAR_CHECK_S,
                    metadata=self.client.metadata,
                )
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                    return  # a sidecar older than CheckRegistration: nothing to compare with
                if not lost:
                    log.warning("lost the sidecar at %s; registering again as soon as it is back", self.sidecar)
                lost = True
                continue
            if reply.current:
                lost = False
                continue
            if not lost:
                log.warning(
                    "the sidecar at %s no longer holds this agent's registration; registering again", self.sidecar
                )
            lost = True
            try:
                await self._register(REREGISTER_WAIT_S)
            except MeshError as exc:
                log.warning("%s; still trying", exc)
                continue
            lost = False

    async def _register(self, timeout_s: float) -> None:
        stub = sidecar_pb2_grpc.SidecarStub(self.client._channel)
        request = sidecar_pb2.RegisterAgentRequest(
            version=self.version,
            capabilities=[c.to_proto() for c in self._capabilities.values()],
            callback_address=self.listen,
            callback_token=self._callback_token,
        )
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while True:
            try:
                reply = await stub.RegisterAgent(
                    request, timeout=10.0, wait_for_ready=True, metadata=self.client.metadata
                )
                break
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE and err.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise MeshError(f"sidecar at {self.sidecar} refused the registration: {err.details()}") from err
                if time.monotonic() + delay > deadline:
                    raise MeshError(f"sidecar at {self.sidecar} was not reachable within {timeout_s} s") from err
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        self.instance_id, self.name = reply.instance_id, reply.agent
        self._registration_id = reply.registration_id
        self.schema_hashes = {c.name: c.schema_hash for c in reply.capabilities}
        log.info("agent %s %s registered as instance %s", self.name, self.version, self.instance_id)


class _Servicer(agent_pb2_grpc.AgentServicer):
    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    async def Handle(
        self, request: agent_pb2.Delivery, context: grpc.aio.ServicerContext[object, object]
    ) -> agent_pb2.Outcome:
        if not callback_auth.presented(context.invocation_metadata(), self._agent._callback_token):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "only this agent's sidecar may deliver calls (no or a wrong callback token)",
            )
        cap = self._agent._capabilities.get(request.capability)
        if cap is None:
            await _fail(context, grpc.StatusCode.NOT_FOUND, f"this agent does not serve {request.capability!r}")
        # A keyed call may run past its caller's deadline (its sidecar's bound is the RPC's): the
        # handler is told the caller's, which its nested calls inherit.
        remaining = request.caller_timeout_ms / 1000 if request.caller_timeout_ms else context.time_remaining()
        ctx = self._context(request, remaining)
        # The trace context the sidecar passed is current while the handler runs: its calls
        # continue this trace (no OpenTelemetry SDK needed in the agent).
        trace_token = attach_headers(*headers_from_metadata(context.invocation_metadata()))
        try:
            args = json.loads(request.payload_json)
            value = await _invoke(cap.handler, args, ctx)
            result = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        except HandlerError as exc:
            await _fail(context, exc.code, exc.message, usage=ctx.usage)
        except MeshError as exc:  # a nested call failed: report it with its own status and kind
            await _fail(context, exc.status_code(), f"{exc.kind}: {exc.message}", cause=exc.kind, usage=ctx.usage)
        except asyncio.CancelledError:
            ctx._cancelled.set()
            raise
        except Exception as exc:  # a bug in the handler: log it here, tell the caller little
            log.exception("handler for %s failed (call %s)", request.capability, request.call_id)
            await _fail(
                context,
                grpc.StatusCode.INTERNAL,
                f"handler for {request.capability} failed with {type(exc).__name__}; see the agent's log for call {request.call_id}",
                usage=ctx.usage,
            )
        finally:
            detach(trace_token)
        return _outcome(result, ctx.usage)

    def _context(self, request: agent_pb2.Delivery, remaining: float | None) -> CallContext:
        """The Delivery decoded: the one place its fields become the handler's CallContext."""
        agent = self._agent
        return CallContext(
            call_id=request.call_id,
            capability=request.capability,
            caller_agent=request.caller_agent,
            caller_spiffe_id=request.caller_spiffe_id,
            session_id=request.session_id,
            workflow_id=request.workflow_id,
            attempt=request.attempt,
            idempotency_key=request.idempotency_key,
            parent_call_id=request.parent_call_id,
            task_id=request.task_id,
            fencing_token=request.fencing_token,
            _task_token=request.task_token,
            on_behalf_of=request.on_behalf_of,
            session_labels=dict(request.session_labels),
            deadline=None if remaining is None else time.monotonic() + remaining,
            _client=agent.client,
            _sidecar=agent.sidecar,
            _api_token=agent._api_token,
            _gateway=agent.gateway,
            _sync_client=agent.sync_client,
        )


def _outcome(result: bytes, usage: Usage | None) -> agent_pb2.Outcome:
    return agent_pb2.Outcome(result_json=result, usage=usage.to_proto() if usage is not None else None)


async def _fail(
    context: grpc.aio.ServicerContext[object, object],
    code: grpc.StatusCode,
    message: str,
    *,
    cause: str = "",
    usage: Usage | None = None,
) -> NoReturn:
    """Fails the call with the agent's own answer, as a structured error (AgentFailed), so the
    sidecar tells it from an agent it could not reach, whatever the code; with the usage the
    handler reported before it failed (spent all the same)."""
    await error_status.abort(context, AgentFailed(code, message, cause=cause, usage=usage))


async def _invoke(handler: Handler, args: Any, ctx: CallContext) -> Any:
    if inspect.iscoroutinefunction(handler):
        return await handler(args, ctx)
    value = await asyncio.to_thread(handler, args, ctx)
    if inspect.isawaitable(value):
        return await value
    return value
