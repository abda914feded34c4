"""Hand the call to the local agent on its callback endpoint: the innermost inbound handler.

An agent answers a failure on purpose with a status carrying the mesh's ErrorInfo (the SDK
always does, meshwarden.error_status): that is the agent's answer, whatever its code, and
goes back as AgentFailed with the agent's code (or, for a kind this sidecar does not know, as
that kind). A failure without it is gRPC's: no answer within the deadline, or UNAVAILABLE,
which then means the agent could not be reached on its callback endpoint. A plain gRPC agent
that does not use the SDK is understood by its code alone, UNAVAILABLE as unreachable.
"""

from __future__ import annotations

import grpc

from meshwarden import error_status
from meshwarden.clock import Clock
from meshwarden.errors import AgentFailed, DeadlineExceeded, MeshError, PeerUnavailable, Unclassified
from meshwarden.sidecar.agent_app import AgentApp
from meshwarden.sidecar.call import Call, Reply
from meshwarden.sidecar.local_agent import LocalAgent, Registration
from meshwarden.sidecar.own_health import OwnHealth
from meshwarden.sidecar.stages.breaker import is_outage
from meshwarden.sidecar.wire import deadlines, delivery
from meshwarden.trace_context import metadata_for


class ToAgent:
    def __init__(self, app: AgentApp, local: LocalAgent, clock: Clock, own: OwnHealth | None = None) -> None:
        self._app, self._local, self._clock, self._own = app, local, clock, own
        self._version: tuple[Registration | None, str] = (None, "")  # str(Version) costs 2 µs a call

    async def __call__(self, call: Call) -> Reply:
        try:
            outcome = await self._app.stub.Handle(
                delivery.to_delivery(call, self._clock.monotonic()),
                timeout=deadlines.next_hop_timeout_s(call, self._clock.monotonic()),
                metadata=metadata_for(call.traceparent, call.tracestate) + self._app.auth,
            )
        except grpc.aio.AioRpcError as err:
            failure = self._translate(err, call)
            if self._own is not None:  # what this instance reports about itself (sidecar.own_health)
                self._own.record(self._clock.monotonic(), is_outage(failure))
            raise failure from err
        if self._own is not None:
            self._own.record(self._clock.monotonic(), False)
        return delivery.to_reply(
            outcome, instance_id=self._local.instance_id, agent=self._local.name, version=self._version_text()
        )

    def _version_text(self) -> str:
        """The registered version as text, made again only when the agent registers again."""
        reg = self._local.registration
        if reg is not self._version[0]:
            self._version = (reg, str(reg.version) if reg else "")
        return self._version[1]

    def _translate(self, err: grpc.aio.AioRpcError, call: Call) -> MeshError:
        agent = self._local.name
        answered = error_status.from_rpc_error(err)
        if isinstance(answered, Unclassified):  # a newer agent's kind: it keeps its kind end to end
            return answered
        if answered is not None:  # the agent's own answer, even when it names a mesh error's kind
            cause = answered.cause if isinstance(answered, AgentFailed) else answered.kind
            usage = answered.usage if isinstance(answered, AgentFailed) else None
            message = f"agent {agent} failed {call.capability}: {err.details()}"
            return AgentFailed(err.code(), message, cause=cause, usage=usage)
        if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded(f"agent {agent} did not finish {call.capability} within the deadline")
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            return PeerUnavailable(f"agent {agent} is not answering on its callback endpoint {self._app.address}")
        return AgentFailed(err.code(), f"agent {agent} failed {call.capability}: {err.details()}")
