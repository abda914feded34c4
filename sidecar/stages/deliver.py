"""Hand the call to the local agent on its callback endpoint: the innermost inbound handler."""

from __future__ import annotations

import grpc

from meshwarden.clock import Clock
from meshwarden.errors import AgentFailed, DeadlineExceeded, MeshError, PeerUnavailable
from meshwarden.sidecar import usage
from meshwarden.sidecar.agent_app import AgentApp
from meshwarden.sidecar.call import Call, Reply
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.trace_context import metadata_for
from meshwarden.v1 import agent_pb2


class ToAgent:
    def __init__(self, app: AgentApp, local: LocalAgent, clock: Clock) -> None:
        self._app, self._local, self._clock = app, local, clock

    async def __call__(self, call: Call) -> Reply:
        delivery = agent_pb2.Delivery(
            call_id=call.call_id,
            capability=call.capability,
            payload_json=call.payload,
            caller_agent=call.caller.agent,
            caller_spiffe_id=call.caller.spiffe_id,
            session_id=call.session_id,
            workflow_id=call.workflow_id,
            attempt=call.attempt,
            idempotency_key=call.idempotency_key,
            parent_call_id=call.parent_call_id,
        )
        timeout = call.next_hop_timeout_s(self._clock.monotonic())
        try:
            outcome = await self._app.stub.Handle(
                delivery, timeout=timeout, metadata=metadata_for(call.traceparent, call.tracestate)
            )
        except grpc.aio.AioRpcError as err:
            raise self._translate(err, call) from err
        call.record.usage = usage.from_proto(outcome.usage if outcome.HasField("usage") else None)
        reg = self._local.registration
        version = str(reg.version) if reg else ""
        return Reply(outcome.result_json, self._local.instance_id, self._local.name, version)

    def _translate(self, err: grpc.aio.AioRpcError, call: Call) -> MeshError:
        agent = self._local.name
        if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded(f"agent {agent} did not finish {call.capability} within the deadline")
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            return PeerUnavailable(f"agent {agent} is not answering on its callback endpoint {self._app.address}")
        return AgentFailed(err.code(), f"agent {agent} failed {call.capability}: {err.details()}")
