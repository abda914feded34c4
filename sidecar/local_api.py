"""meshwarden.v1.Sidecar, the agent's local API: converts protobuf to `Call` and back and
makes no decisions of its own; the outbound pipeline does."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence

import grpc

from meshwarden import callback_auth
from meshwarden.addresses import AddressError, parse_host_port
from meshwarden.errors import BadPayload, MeshError, RegistryUnavailable
from meshwarden.sidecar.call import Call, Caller, Handler
from meshwarden.sidecar.config import SidecarConfig
from meshwarden.sidecar.instance_health import Assessment
from meshwarden.sidecar.lease import Lease
from meshwarden.sidecar.local_agent import Registration
from meshwarden.sidecar.outcome_reporter import OutcomeReporter
from meshwarden.sidecar.rescue import abort_unexpected, abort_with
from meshwarden.sidecar.runtime import Runtime
from meshwarden.sidecar.task_relay import TaskRelay
from meshwarden.sidecar.wire import approval_headers, deadlines, invoke
from meshwarden.trace_context import headers_from_metadata
from meshwarden.v1 import catalog_pb2, receipts_pb2, sidecar_pb2, sidecar_pb2_grpc, tasks_pb2

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[object, object]
_REGISTER_WAIT_S = 5.0


class LocalApi(sidecar_pb2_grpc.SidecarServicer):
    def __init__(
        self,
        config: SidecarConfig,
        outbound: Handler,
        rt: Runtime,
        lease: Lease,
        on_registered: Callable[[], Awaitable[None]],
        outcomes: OutcomeReporter | None = None,
        health: Callable[[], Sequence[Assessment]] = list,
        tasks: TaskRelay | None = None,
    ) -> None:
        self._config, self._outbound, self._lease = config, outbound, lease
        self._outcomes, self._health, self._tasks = outcomes, health, tasks
        self._on_registered = on_registered
        self.registered: sidecar_pb2.RegisterAgentRequest | None = None  # the last accepted
        self._registration_id = ""  # names the last accepted registration (CheckRegistration)
        self._local, self._catalog, self._clock, self._app = rt.local, rt.catalog, rt.clock, rt.agent_app
        self._breakers = rt.breakers
        self._caller = Caller(agent=rt.local.name, instance_id=rt.local.instance_id, spiffe_id=rt.local.spiffe_id)

    async def RegisterAgent(
        self, request: sidecar_pb2.RegisterAgentRequest, context: Context
    ) -> sidecar_pb2.RegisterAgentResponse:
        try:
            registration = await self._accept(request)
        except MeshError as err:
            await abort_with(context, err)
        # Answer once the registry holds the registration, so that "registered" means
        # "routable"; with the registry down, answer anyway: the lease loop keeps trying.
        if not await self._lease.confirmed(registration.generation, _REGISTER_WAIT_S):
            log.warning(
                "registry has not confirmed %s yet; it will join the catalog when it does", self._local.instance_id
            )
        await self._on_registered()  # the inbound policy slice follows what the agent serves
        instance = self._local.instance_proto() or catalog_pb2.Instance()
        return sidecar_pb2.RegisterAgentResponse(
            instance_id=self._local.instance_id,
            agent=self._local.name,
            capabilities=instance.capabilities,
            registration_id=self._registration_id,
        )

    async def CheckRegistration(
        self, request: sidecar_pb2.CheckRegistrationRequest, context: Context
    ) -> sidecar_pb2.CheckRegistrationResponse:
        held = self._local.registration is not None and bool(self._registration_id)
        return sidecar_pb2.CheckRegistrationResponse(current=held and request.registration_id == self._registration_id)

    async def replay(self, request: sidecar_pb2.RegisterAgentRequest) -> None:
        """Registers the agent as `request` did with this sidecar before it started again in place
        (sidecar.app, after its registry's CA changed): the agent registered once and need not
        know. MeshError when it no longer passes."""
        await self._accept(request)
        await self._on_registered()
        log.info("registration of %s %s carried over", self._local.name, request.version)

    async def _accept(self, request: sidecar_pb2.RegisterAgentRequest) -> Registration:
        callback = self._callback_address(request.callback_address)
        refused = callback_auth.token_problem(request.callback_token, callback or self._app.address)
        if refused is not None:
            raise BadPayload(refused)
        registration = self._local.register(request.version, list(request.capabilities))
        await self._app.retarget(callback or self._app.address, request.callback_token)
        self.registered = request  # kept in memory only: it holds the agent's callback secret
        self._registration_id = secrets.token_hex(16)
        return registration

    async def Invoke(self, request: sidecar_pb2.InvokeRequest, context: Context) -> sidecar_pb2.InvokeResponse:
        call_id = secrets.token_hex(16)  # as random as uuid4().hex, in a fifth of the time
        try:
            call = self._to_call(request, context, call_id)
            reply = await self._outbound(call)
        except MeshError as err:
            await abort_with(context, err)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the server rescue: a bug, logged in full, revealed to nobody
            await abort_unexpected(context, f"invoke {request.capability}", call_id)
        return invoke.to_response(reply, call_id)

    async def ReportOutcome(
        self, request: receipts_pb2.ReportOutcomeRequest, context: Context
    ) -> receipts_pb2.ReportOutcomeResponse:
        try:
            if self._outcomes is None:
                raise RegistryUnavailable("this sidecar has no registry link to report outcomes to")
            await self._outcomes.report(request, context.time_remaining())
        except MeshError as err:
            await abort_with(context, err)
        log.info("session %s reported %s by %s", request.session_id, request.outcome, self._local.name)
        return receipts_pb2.ReportOutcomeResponse()

    async def LeaseTask(self, request: tasks_pb2.LeaseTaskRequest, context: Context) -> tasks_pb2.LeaseTaskResponse:
        try:
            return await self._task_relay().lease(request, context.time_remaining())
        except MeshError as err:
            await abort_with(context, err)

    async def HeartbeatTask(self, request: tasks_pb2.TaskReport, context: Context) -> tasks_pb2.LeaseTaskResponse:
        try:
            return await self._task_relay().heartbeat(request, context.time_remaining())
        except MeshError as err:
            await abort_with(context, err)

    async def StartTask(self, request: tasks_pb2.TaskReport, context: Context) -> tasks_pb2.TaskResponse:
        try:
            return await self._task_relay().start(request, context.time_remaining())
        except MeshError as err:
            await abort_with(context, err)

    async def CompleteTask(self, request: tasks_pb2.CompleteTaskRequest, context: Context) -> tasks_pb2.TaskResponse:
        try:
            return await self._task_relay().complete(request, context.time_remaining())
        except MeshError as err:
            await abort_with(context, err)

    async def SubmitTask(self, request: tasks_pb2.SubmitTaskRequest, context: Context) -> tasks_pb2.SubmitTaskResponse:
        try:
            return await self._task_relay().submit(request, context.time_remaining())
        except MeshError as err:
            await abort_with(context, err)

    def _task_relay(self) -> TaskRelay:
        if self._tasks is None:
            raise RegistryUnavailable("this sidecar has no registry link to relay tasks to")
        return self._tasks

    async def ListCapabilities(
        self, request: sidecar_pb2.ListCapabilitiesRequest, context: Context
    ) -> sidecar_pb2.ListCapabilitiesResponse:
        return sidecar_pb2.ListCapabilitiesResponse(
            instances=self._catalog.instances(),
            revision=self._catalog.revision,
            breaker_states=self._breakers.states(),
            health=[a.to_proto() for a in self._health()],
        )

    @staticmethod
    def _callback_address(text: str) -> str:
        if not text:
            return ""
        if text.startswith("unix:"):  # unix:/absolute/path, what gRPC dials
            if not text.startswith("unix:/") or len(text) > 108 or not text.isprintable():
                raise BadPayload(f"callback_address {text!r} must be unix:/absolute/path (at most 108 characters)")
            return text
        try:
            return str(parse_host_port(text, what="callback_address"))
        except AddressError as exc:
            raise BadPayload(str(exc)) from exc

    def _to_call(self, request: sidecar_pb2.InvokeRequest, context: Context, call_id: str) -> Call:
        # The sidecar gives up a moment before the agent does; with no deadline, the
        # capability's declared default applies, else the sidecar's.
        remaining = context.time_remaining()
        default_s = 0.0
        if remaining is None:
            default_s = self._catalog.default_timeout_s(request.capability) or self._config.default_timeout_s
        metadata = context.invocation_metadata()  # a new tuple at every call: read it once
        traceparent, tracestate = headers_from_metadata(metadata)
        approval = approval_headers.from_metadata(metadata)
        return invoke.to_call(
            request,
            call_id=call_id,
            caller=self._caller,
            deadline=deadlines.arriving(remaining, default_s, self._clock.monotonic(), margin=True),
            traceparent=traceparent,
            tracestate=tracestate,
            approval=approval,
        )
