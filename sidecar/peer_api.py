"""meshwarden.v1.Peer, where other sidecars deliver calls: converts to `Call` and runs the
inbound pipeline, which decides everything."""

from __future__ import annotations

import asyncio
import logging

import grpc

from meshwarden import identifiers, session_labels
from meshwarden.clock import Clock
from meshwarden.errors import BadPayload, MeshError, Unidentified
from meshwarden.identity.peer import Unauthenticated, peer_identity
from meshwarden.sidecar.call import Call, Caller, Handler
from meshwarden.sidecar.config import SidecarConfig
from meshwarden.sidecar.local_agent import CAPABILITY_NAME
from meshwarden.sidecar.rescue import abort_unexpected, abort_with
from meshwarden.sidecar.wire import deadlines, peer_call
from meshwarden.trace_context import headers_from_metadata
from meshwarden.v1 import peer_pb2, peer_pb2_grpc

Context = grpc.aio.ServicerContext[object, object]
log = logging.getLogger(__name__)


class PeerApi(peer_pb2_grpc.PeerServicer):
    def __init__(self, config: SidecarConfig, inbound: Handler, clock: Clock) -> None:
        self._config, self._inbound, self._clock = config, inbound, clock

    async def Deliver(self, request: peer_pb2.PeerCall, context: Context) -> peer_pb2.PeerReply:
        try:
            reply = await self._inbound(self._to_call(request, context))
        except Unidentified as err:
            shown = (
                request.capability
                if CAPABILITY_NAME.fullmatch(request.capability)
                else identifiers.shown(request.capability)
            )
            log.warning("refused %s from %s: %s", shown, context.peer(), err.message)
            await abort_with(context, err)
        except MeshError as err:
            await abort_with(context, err)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the server rescue: a bug, logged in full, revealed to nobody
            await abort_unexpected(context, f"deliver {request.capability}", request.call_id)
        return peer_call.to_peer_reply(reply)

    def _to_call(self, request: peer_pb2.PeerCall, context: Context) -> Call:
        """The call as the certificate says who made it. A caller it does not identify as an
        agent's sidecar is still a call, with no caller: the inbound pipeline refuses it
        (peer_identity), so the refusal leaves its receipt, metric and span like any other."""
        caller, problem = Caller(agent="", instance_id=request.caller_instance_id), ""
        try:  # the caller is whoever its certificate says, nothing else
            identity = peer_identity(context, self._config.trust_domain)
        except Unauthenticated as exc:
            problem = str(exc)
        else:
            if identity.kind != "agent":
                problem = f"{identity.spiffe_id} is not an agent's sidecar; only sidecars deliver calls"
            else:
                caller = Caller(identity.name, request.caller_instance_id, identity.spiffe_id)
        if not problem:  # the peer's identifiers bounded as the local API's are (meshwarden.identifiers)
            found = identifiers.first_problem(
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
                    "on_behalf_of": request.on_behalf_of,
                }
            )
            labels = session_labels.problem(request.session_labels)
            found = found or (labels.message if labels is not None else None)
            if found is not None or not CAPABILITY_NAME.fullmatch(request.capability):
                raise BadPayload(f"call from {caller.agent}: {found or 'capability is not a capability name'}")
        traceparent, tracestate = headers_from_metadata(context.invocation_metadata())
        deadline = deadlines.arriving(
            context.time_remaining(), self._config.default_timeout_s, self._clock.monotonic(), margin=False
        )
        return peer_call.to_call(
            request,
            caller=caller,
            identity_problem=problem,
            deadline=deadline,
            traceparent=traceparent,
            tracestate=tracestate,
        )
