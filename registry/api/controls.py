"""The operator controls' RPCs (meshwarden.v1.Controls): kill switches, isolations, the audit
log, and sidecars' acknowledgements. Proto in, registry.controls, proto out.

Writes answer once every live sidecar acknowledged the change, or when the requested wait
ends, with how many did and how long it took. Who may call what is registry.authz's table,
applied by the interceptor (registry.api.authorization), which also turns errors into statuses.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import grpc

from meshwarden.clock import Clock
from meshwarden.control_scopes import ScopeError, VersionTarget, parse_version_target
from meshwarden.registry import keyset
from meshwarden.registry.api.service import Handler
from meshwarden.registry.audit import Audit, AuditEntry
from meshwarden.registry.authz import current_caller
from meshwarden.registry.control_acks import Acknowledgements, Enforcement
from meshwarden.registry.controls import Controls, ControlsSet, Isolation, KillEffect, KillSwitch
from meshwarden.registry.errors import InvalidInput, Unauthenticated, UnknownInstance
from meshwarden.registry.task_queue import TaskQueue
from meshwarden.registry.wire import duration, timestamp
from meshwarden.v1 import controls_pb2

DEFAULT_WAIT_S: Final = 5.0
MAX_WAIT_S: Final = 60.0
MAX_AUDIT_ENTRIES: Final = 10_000

Context = grpc.aio.ServicerContext[Any, Any]


class ControlsApi:
    def __init__(
        self, controls: Controls, acks: Acknowledgements, audit: Audit, clock: Clock, tasks: TaskQueue | None = None
    ) -> None:
        self._controls, self._acks, self._audit, self._clock = controls, acks, audit, clock
        self._tasks = tasks

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "Kill": self.Kill,
            "ListKills": self.ListKills,
            "LiftKill": self.LiftKill,
            "Isolate": self.Isolate,
            "LiftIsolation": self.LiftIsolation,
            "ListIsolations": self.ListIsolations,
            "ListAudit": self.ListAudit,
            "AcknowledgeControls": self.AcknowledgeControls,
        }

    async def Kill(self, request: controls_pb2.KillRequest, _: Context) -> controls_pb2.KillResponse:
        started = self._clock.monotonic()
        ttl_s = request.ttl.ToTimedelta().total_seconds() if request.HasField("ttl") else 0.0
        switch, revision = await self._controls.kill(
            request.scope_kind, request.scope_value, request.reason, ttl_s, current_caller()
        )
        if self._tasks is not None:  # the tasks in its scope end too (registry.task_queue)
            await self._tasks.cancel_in_scope(switch.scope_kind, switch.scope_value, switch.created_by, switch.reason)
        enforcement = await self._acks.wait_for(revision, started, _wait_s(request))
        effect = KillEffect(
            switch_id=switch.id, enforced=enforcement.enforced, expected=enforcement.expected, took_s=enforcement.took_s
        )
        await self._controls.record_effect(effect)  # `kill list` shows it for as long as the switch is in force
        return controls_pb2.KillResponse(kill_switch=kill_to_proto(switch), enforcement=_enforcement(enforcement))

    async def LiftKill(self, request: controls_pb2.LiftKillRequest, _: Context) -> controls_pb2.LiftKillResponse:
        started = self._clock.monotonic()
        if not request.id:
            raise InvalidInput("id", "is required (see meshwarden kill list)")
        switch, revision = await self._controls.lift(request.id, request.reason, current_caller())
        enforcement = await self._acks.wait_for(revision, started, _wait_s(request))
        return controls_pb2.LiftKillResponse(kill_switch=kill_to_proto(switch), enforcement=_enforcement(enforcement))

    async def Isolate(self, request: controls_pb2.IsolateRequest, _: Context) -> controls_pb2.IsolateResponse:
        started = self._clock.monotonic()
        isolation, revision = await self._controls.isolate(_target(request.target), request.reason, current_caller())
        enforcement = await self._acks.wait_for(revision, started, _wait_s(request))
        return controls_pb2.IsolateResponse(
            isolation=isolation_to_proto(isolation), enforcement=_enforcement(enforcement)
        )

    async def LiftIsolation(
        self, request: controls_pb2.LiftIsolationRequest, _: Context
    ) -> controls_pb2.LiftIsolationResponse:
        started = self._clock.monotonic()
        isolation, revision = await self._controls.lift_isolation(
            _target(request.target), request.reason, current_caller()
        )
        enforcement = await self._acks.wait_for(revision, started, _wait_s(request))
        return controls_pb2.LiftIsolationResponse(
            isolation=isolation_to_proto(isolation), enforcement=_enforcement(enforcement)
        )

    async def ListKills(self, request: controls_pb2.ListKillsRequest, _: Context) -> controls_pb2.ListKillsResponse:
        current = await self._controls.current()
        switches, next_cursor = keyset.page(
            current.kill_switches,
            lambda k: (k.created_at, k.id),
            (float, str),
            request.cursor,
            request.limit,
            keyset.MAX_PAGE,
        )
        effects = await self._controls.effects()
        listed = {k.id for k in switches}
        return controls_pb2.ListKillsResponse(
            kill_switches=[kill_to_proto(k) for k in switches],
            revision=current.revision,
            time_to_effect={
                switch_id: controls_pb2.Enforcement(enforced=e.enforced, expected=e.expected, took=duration(e.took_s))
                for switch_id, e in effects.items()
                if switch_id in listed
            },
            next_cursor=next_cursor,
        )

    async def ListIsolations(
        self, request: controls_pb2.ListIsolationsRequest, _: Context
    ) -> controls_pb2.ListIsolationsResponse:
        current = await self._controls.current()
        isolations, next_cursor = keyset.page(
            current.isolations,
            lambda i: (i.created_at, i.agent, i.version),
            (float, str, str),
            request.cursor,
            request.limit,
            keyset.MAX_PAGE,
        )
        return controls_pb2.ListIsolationsResponse(
            isolations=[isolation_to_proto(i) for i in isolations], revision=current.revision, next_cursor=next_cursor
        )

    async def ListAudit(self, request: controls_pb2.ListAuditRequest, _: Context) -> controls_pb2.ListAuditResponse:
        since = request.since.ToMicroseconds() / 1e6 if request.HasField("since") else 0.0
        limit = min(request.limit or 1000, MAX_AUDIT_ENTRIES)
        before_id = int(keyset.decode(request.cursor, int)[0]) if request.cursor else 0
        entries = await self._audit.list(since, limit, before_id)
        more = len(entries) == limit and entries
        return controls_pb2.ListAuditResponse(
            entries=[audit_to_proto(e) for e in entries], next_cursor=keyset.encode(entries[0].id) if more else ""
        )

    async def AcknowledgeControls(
        self, requests: AsyncIterator[controls_pb2.ControlsAck], _: Context
    ) -> controls_pb2.ControlsAckResponse:
        # One stream per sidecar, one message per change; the caller was checked once, when the
        # stream opened, from its certificate's SPIFFE ID.
        identity = current_caller().identity
        if identity is None:  # the table requires an agent's SVID; this keeps the types honest
            raise Unauthenticated("AcknowledgeControls needs the SVID the sidecar watches with")
        async for ack in requests:
            try:
                self._acks.acknowledge(ack.instance_id, ack.revision, identity.spiffe_id)
            except UnknownInstance:
                pass  # its watch stream just closed; it acknowledges again when it reconnects
        return controls_pb2.ControlsAckResponse()


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
