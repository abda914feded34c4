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
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.sidecar.wire import deadlines, delivery
from meshwarden.trace_context import metadata_for


class ToAgent:
    def __init__(self, app: AgentApp, local: LocalAgent, clock: Clock) -> None:
        self._app, self._local, self._clock = app, local, clock

    async def __call__(self, call: Call) -> Reply:
        try:
            outcome = await self._app.stub.Handle(
                delivery.to_delivery(call),
                timeout=deadlines.next_hop_timeout_s(call, self._clock.monotonic()),
                metadata=metadata_for(call.traceparent, call.tracestate) + self._app.auth,
            )
        except grpc.aio.AioRpcError as err:
            raise self._translate(err, call) from err
        reg = self._local.registration
        version = str(reg.version) if reg else ""
        return delivery.to_reply(outcome, instance_id=self._local.instance_id, agent=self._local.name, version=version)

    def _translate(self, err: grpc.aio.AioRpcError, call: Call) -> MeshError:
        agent = self._local.name
        answered = error_status.from_rpc_error(err)
        if isinstance(answered, Unclassified):  # a newer agent's kind: it keeps its kind end to end
            return answered
        if answered is not None:  # the agent's own answer, even when it names a mesh error's kind
            cause = answered.cause if isinstance(answered, AgentFailed) else answered.kind
            return AgentFailed(err.code(), f"agent {agent} failed {call.capability}: {err.details()}", cause=cause)
        if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded(f"agent {agent} did not finish {call.capability} within the deadline")
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            return PeerUnavailable(f"agent {agent} is not answering on its callback endpoint {self._app.address}")
        return AgentFailed(err.code(), f"agent {agent} failed {call.capability}: {err.details()}")
