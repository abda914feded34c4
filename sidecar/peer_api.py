"""meshwarden.v1.Peer, where other sidecars deliver calls: converts to `Call` and runs the
inbound pipeline, which decides everything."""

from __future__ import annotations

import asyncio
import logging

import grpc

from meshwarden import identifiers
from meshwarden.clock import Clock
from meshwarden.errors import BadPayload, MeshError, Unidentified
from meshwarden.identity.peer import Unauthenticated, peer_identity
from meshwarden.sidecar import usage
from meshwarden.sidecar.call import Call, Caller, Handler
from meshwarden.sidecar.config import SidecarConfig
from meshwarden.sidecar.local_agent import CAPABILITY_NAME
from meshwarden.sidecar.rescue import abort_unexpected, abort_with
from meshwarden.trace_context import headers_from_metadata
from meshwarden.v1 import peer_pb2, peer_pb2_grpc

Context = grpc.aio.ServicerContext[object, object]
log = logging.getLogger(__name__)


class PeerApi(peer_pb2_grpc.PeerServicer):
    def __init__(self, config: SidecarConfig, inbound: Handler, clock: Clock) -> None:
        self._config, self._inbound, self._clock = config, inbound, clock

    async def Deliver(self, request: peer_pb2.PeerCall, context: Context) -> peer_pb2.PeerReply:
        try:
            call = self._to_call(request, context)
            reply = await self._inbound(call)
        except Unidentified as err:
            capability = (
                request.capability
                if CAPABILITY_NAME.fullmatch(request.capability)
                else identifiers.shown(request.capability)
            )
            log.warning("refused %s from %s: %s", capability, context.peer(), err.message)
            await abort_with(context, err)
        except MeshError as err:
            await abort_with(context, err)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the server rescue: a bug, logged in full, revealed to nobody
            await abort_unexpected(context, f"deliver {request.capability}", request.call_id)
        return peer_pb2.PeerReply(
            result_json=reply.result,
            instance_id=reply.instance_id,
            agent=reply.agent,
            version=reply.version,
            usage=usage.to_proto(call.record.usage),  # as deliver read it from the agent
        )

    def _to_call(self, request: peer_pb2.PeerCall, context: Context) -> Call:
        try:  # the caller is whoever its certificate says, nothing else
            identity = peer_identity(context, self._config.trust_domain)
        except Unauthenticated as exc:
            raise Unidentified(str(exc)) from exc
        if identity.kind != "agent":
            raise Unidentified(f"{identity.spiffe_id} is not an agent's sidecar; only sidecars deliver calls")
        problem = identifiers.first_problem(
            {
                "call_id": request.call_id,
                "session_id": request.session_id,
                "workflow_id": request.workflow_id,
                "parent_call_id": request.parent_call_id,
                "idempotency_key": request.idempotency_key,
                "schema_hash": request.schema_hash,
                "caller_instance_id": request.caller_instance_id,
                "target_instance_id": request.target_instance_id,
                "caller_agent": request.caller_agent,
            }
        )
        if problem is not None:
            raise BadPayload(f"call from {identity.name}: {problem}")
        if not CAPABILITY_NAME.fullmatch(request.capability):
            raise BadPayload(
                f"call from {identity.name}: capability {identifiers.shown(request.capability)} is not a capability name"
            )
        remaining = context.time_remaining()
        timeout = self._config.default_timeout_s if remaining is None else remaining
        traceparent, tracestate = headers_from_metadata(context.invocation_metadata())
        return Call(
            call_id=request.call_id,
            capability=request.capability,
            payload=request.payload_json,
            caller=Caller(agent=identity.name, instance_id=request.caller_instance_id, spiffe_id=identity.spiffe_id),
            claimed_caller=request.caller_agent,
            deadline=self._clock.monotonic() + timeout,
            schema_hash=request.schema_hash,
            session_id=request.session_id,
            workflow_id=request.workflow_id,
            idempotency_key=request.idempotency_key,
            attempt=max(request.attempt, 1),
            cost_estimate_micro_usd=(
                request.cost_estimate_micro_usd if request.HasField("cost_estimate_micro_usd") else None
            ),
            target_instance_id=request.target_instance_id,
            parent_call_id=request.parent_call_id,
            traceparent=traceparent,
            tracestate=tracestate,
        )
