"""meshwarden.v1.Peer, where other sidecars deliver calls: converts to `Call` and runs the
inbound pipeline, which decides everything."""

from __future__ import annotations

import asyncio

import grpc

from meshwarden.clock import Clock
from meshwarden.errors import MeshError
from meshwarden.v1 import peer_pb2, peer_pb2_grpc
from sidecar.call import Call, Caller, Handler
from sidecar.config import SidecarConfig
from sidecar.rescue import abort_unexpected, abort_with

Context = grpc.aio.ServicerContext[object, object]


class PeerApi(peer_pb2_grpc.PeerServicer):
    def __init__(self, config: SidecarConfig, inbound: Handler, clock: Clock) -> None:
        self._config, self._inbound, self._clock = config, inbound, clock

    async def Deliver(self, request: peer_pb2.PeerCall, context: Context) -> peer_pb2.PeerReply:
        try:
            reply = await self._inbound(self._to_call(request, context))
        except MeshError as err:
            await abort_with(context, err)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the server rescue: a bug, logged in full, revealed to nobody
            await abort_unexpected(context, f"deliver {request.capability}", request.call_id)
        return peer_pb2.PeerReply(
            result_json=reply.result, instance_id=reply.instance_id, agent=reply.agent, version=reply.version
        )

    def _to_call(self, request: peer_pb2.PeerCall, context: Context) -> Call:
        remaining = context.time_remaining()
        timeout = self._config.default_timeout_s if remaining is None else remaining
        return Call(
            call_id=request.call_id,
            capability=request.capability,
            payload=request.payload_json,
            caller=Caller(agent=request.caller_agent, instance_id=request.caller_instance_id),
            deadline=self._clock.monotonic() + timeout,
            schema_hash=request.schema_hash,
            session_id=request.session_id,
            workflow_id=request.workflow_id,
            attempt=max(request.attempt, 1),
            target_instance_id=request.target_instance_id,
        )
