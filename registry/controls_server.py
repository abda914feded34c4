"""The gRPC face of operator controls (meshwarden.v1.Controls): kill switches, isolations, the
audit log, and sidecars' acknowledgements.

Writes need the operator credential (registry.authz) and answer once every live sidecar
acknowledged the change, or when the requested wait ends, with how many did and how long it
took. Errors become statuses in registry.rescue, as for the Registry service.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc

from meshwarden.clock import Clock
from meshwarden.control_scopes import ScopeError, VersionTarget, parse_version_target
from meshwarden.registry.audit import Audit, AuditEntry
from meshwarden.registry.authz import Authorizer, Caller, method
from meshwarden.registry.control_acks import Acknowledgements, Enforcement
from meshwarden.registry.controls import Controls, ControlsSet, Isolation, KillSwitch
from meshwarden.registry.errors import InvalidInput, UnknownInstance
from meshwarden.registry.rescue import abort, serve_unary
from meshwarden.registry.task_queue import TaskQueue
from meshwarden.registry.wire import duration, timestamp
from meshwarden.v1 import controls_pb2, controls_pb2_grpc

SERVICE_NAME: Final = controls_pb2.DESCRIPTOR.services_by_name["Controls"].full_name
KILL: Final = method(SERVICE_NAME, "Kill")
LIST_KILLS: Final = method(SERVICE_NAME, "ListKills")
LIFT_KILL: Final = method(SERVICE_NAME, "LiftKill")
ISOLATE: Final = method(SERVICE_NAME, "Isolate")
LIFT_ISOLATION: Final = method(SERVICE_NAME, "LiftIsolation")
LIST_ISOLATIONS: Final = method(SERVICE_NAME, "ListIsolations")
LIST_AUDIT: Final = method(SERVICE_NAME, "ListAudit")
ACKNOWLEDGE: Final = method(SERVICE_NAME, "AcknowledgeControls")
DEFAULT_WAIT_S: Final = 5.0
MAX_WAIT_S: Final = 60.0
MAX_AUDIT_ENTRIES: Final = 10_000

Context = grpc.aio.ServicerContext[Any, Any]


class ControlsService(controls_pb2_grpc.ControlsServicer):
    def __init__(
        self,
        controls: Controls,
        acks: Acknowledgements,
        audit: Audit,
        authorizer: Authorizer,
        clock: Clock,
        tasks: TaskQueue | None = None,
    ) -> None:
        self._controls, self._acks, self._audit, self._authorizer = controls, acks, audit, authorizer
        self._clock, self._tasks = clock, tasks

    async def Kill(self, request: controls_pb2.KillRequest, context: Context) -> controls_pb2.KillResponse:
        try:
            caller, started = self._operator(KILL, context), self._clock.monotonic()
            ttl_s = request.ttl.ToTimedelta().total_seconds() if request.HasField("ttl") else 0.0
            switch, revision = self._controls.kill(
                request.scope_kind, request.scope_value, request.reason, ttl_s, caller
            )
            if self._tasks is not None:  # the tasks in its scope end too (registry.task_queue)
                self._tasks.cancel_in_scope(switch.scope_kind, switch.scope_value, switch.created_by, switch.reason)
            enforcement = await self._acks.wait_for(revision, started, _wait_s(request))
            return controls_pb2.KillResponse(kill_switch=kill_to_proto(switch), enforcement=_enforcement(enforcement))
        except Exception as exc:  # noqa: BLE001 -- the unary rescue: every error becomes a status
            await abort(context, exc, KILL)

    async def LiftKill(self, request: controls_pb2.LiftKillRequest, context: Context) -> controls_pb2.LiftKillResponse:
        try:
            caller, started = self._operator(LIFT_KILL, context), self._clock.monotonic()
            if not request.id:
                raise InvalidInput("id", "is required (see meshwarden kill list)")
            switch, revision = self._controls.lift(request.id, request.reason, caller)
            enforcement = await self._acks.wait_for(revision, started, _wait_s(request))
            return controls_pb2.LiftKillResponse(
                kill_switch=kill_to_proto(switch), enforcement=_enforcement(enforcement)
            )
        except Exception as exc:  # noqa: BLE001 -- the unary rescue
            await abort(context, exc, LIFT_KILL)

    async def Isolate(self, request: controls_pb2.IsolateRequest, context: Context) -> controls_pb2.IsolateResponse:
        try:
            caller, started = self._operator(ISOLATE, context), self._clock.monotonic()
            isolation, revision = self._controls.isolate(_target(request.target), request.reason, caller)
            enforcement = await self._acks.wait_for(revision, started, _wait_s(request))
            return controls_pb2.IsolateResponse(
                isolation=isolation_to_proto(isolation), enforcement=_enforcement(enforcement)
            )
        except Exception as exc:  # noqa: BLE001 -- the unary rescue
            await abort(context, exc, ISOLATE)

    async def LiftIsolation(
        self, request: controls_pb2.LiftIsolationRequest, context: Context
    ) -> controls_pb2.LiftIsolationResponse:
        try:
            caller, started = self._operator(LIFT_ISOLATION, context), self._clock.monotonic()
            isolation, revision = self._controls.lift_isolation(_target(request.target), request.reason, caller)
            enforcement = await self._acks.wait_for(revision, started, _wait_s(request))
            return controls_pb2.LiftIsolationResponse(
                isolation=isolation_to_proto(isolation), enforcement=_enforcement(enforcement)
            )
        except Exception as exc:  # noqa: BLE001 -- the unary rescue
            await abort(context, exc, LIFT_ISOLATION)

    async def ListKills(
        self, request: controls_pb2.ListKillsRequest, context: Context
    ) -> controls_pb2.ListKillsResponse:
        return await serve_unary(LIST_KILLS, self._list_kills, request, context, self._authorizer)

    async def ListIsolations(
        self, request: controls_pb2.ListIsolationsRequest, context: Context
    ) -> controls_pb2.ListIsolationsResponse:
        return await serve_unary(LIST_ISOLATIONS, self._list_isolations, request, context, self._authorizer)

    async def ListAudit(
        self, request: controls_pb2.ListAuditRequest, context: Context
    ) -> controls_pb2.ListAuditResponse:
        return await serve_unary(LIST_AUDIT, self._list_audit, request, context, self._authorizer)

    async def AcknowledgeControls(
        self, requests: AsyncIterator[controls_pb2.ControlsAck], context: Context
    ) -> controls_pb2.ControlsAckResponse:
        # One stream per sidecar, one message per change: the caller is checked once, from its
        # certificate's SPIFFE ID (authz.Authorizer.agent).
        try:
            identity = self._authorizer.agent(ACKNOWLEDGE, context)
            async for ack in requests:
                try:
                    self._acks.acknowledge(ack.instance_id, ack.revision, identity.spiffe_id)
                except UnknownInstance:
                    pass  # its watch stream just closed; it acknowledges again when it reconnects
            return controls_pb2.ControlsAckResponse()
        except Exception as exc:  # noqa: BLE001 -- the stream's rescue
            await abort(context, exc, ACKNOWLEDGE)

    def _operator(self, rpc: str, context: Context) -> Caller:
        caller = self._authorizer.caller(context)
        self._authorizer.check(rpc, caller)
        return caller

    def _list_kills(self, _request: controls_pb2.ListKillsRequest, _caller: Caller) -> controls_pb2.ListKillsResponse:
        current = self._controls.current()
        return controls_pb2.ListKillsResponse(
            kill_switches=[kill_to_proto(k) for k in current.kill_switches], revision=current.revision
        )

    def _list_isolations(
        self, _request: controls_pb2.ListIsolationsRequest, _caller: Caller
    ) -> controls_pb2.ListIsolationsResponse:
        current = self._controls.current()
        return controls_pb2.ListIsolationsResponse(
            isolations=[isolation_to_proto(i) for i in current.isolations], revision=current.revision
        )

    def _list_audit(self, request: controls_pb2.ListAuditRequest, _caller: Caller) -> controls_pb2.ListAuditResponse:
        since = request.since.ToMicroseconds() / 1e6 if request.HasField("since") else 0.0
        limit = min(request.limit or 1000, MAX_AUDIT_ENTRIES)
        return controls_pb2.ListAuditResponse(entries=[audit_to_proto(e) for e in self._audit.list(since, limit)])


@functools.lru_cache(maxsize=4)  # one message per change, shared by every watcher's stream
def controls_to_proto(current: ControlsSet) -> controls_pb2.ControlsUpdate:
    return controls_pb2.ControlsUpdate(
        revision=current.revision,
        kill_switches=[kill_to_proto(k) for k in current.kill_switches],
        isolations=[isolation_to_proto(i) for i in current.isolations],
    )


def kill_to_proto(switch: KillSwitch) -> controls_pb2.KillSwitch:
    return controls_pb2.KillSwitch(
        id=switch.id,
        scope_kind=switch.scope_kind,  # type: ignore[arg-type]
        scope_value=switch.scope_value,
        reason=switch.reason,
        created_by=switch.created_by,
        created_at=timestamp(switch.created_at),
        expires_at=timestamp(switch.expires_at) if switch.expires_at is not None else None,
    )


def isolation_to_proto(isolation: Isolation) -> controls_pb2.Isolation:
    return controls_pb2.Isolation(
        agent=isolation.agent,
        version=isolation.version,
        reason=isolation.reason,
        created_by=isolation.created_by,
        created_at=timestamp(isolation.created_at),
    )


def audit_to_proto(entry: AuditEntry) -> controls_pb2.AuditEntry:
    return controls_pb2.AuditEntry(
        id=entry.id,
        at=timestamp(entry.at),
        actor=entry.actor,
        claimed_user=entry.claimed_user,
        action=entry.action,
        target=entry.target,
        reason=entry.reason,
        detail=entry.detail,
    )


def _enforcement(result: Enforcement) -> controls_pb2.Enforcement:
    return controls_pb2.Enforcement(
        revision=result.revision,
        enforced=result.enforced,
        expected=result.expected,
        took=duration(result.took_s),
        not_acknowledged=result.not_acknowledged,
    )


def _wait_s(
    request: controls_pb2.KillRequest
    | controls_pb2.LiftKillRequest
    | controls_pb2.IsolateRequest
    | controls_pb2.LiftIsolationRequest,
) -> float:
    if not request.HasField("wait"):
        return DEFAULT_WAIT_S
    wait = request.wait.ToTimedelta().total_seconds()
    if not 0 <= wait <= MAX_WAIT_S:
        raise InvalidInput("wait", f"must be from 0 to {MAX_WAIT_S:.0f} s, got {wait:g} s")
    return wait


def _target(text: str) -> VersionTarget:
    try:
        return parse_version_target(text, "target")
    except ScopeError as exc:
        raise InvalidInput("target", str(exc)) from exc
