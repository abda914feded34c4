"""Send the call to the chosen instance's sidecar: the innermost outbound handler."""

from __future__ import annotations

import grpc

from meshwarden.clock import Clock
from meshwarden.errors import (
    DeadlineExceeded,
    MeshError,
    NotSent,
    PeerIdentityMismatch,
    PeerUnavailable,
    from_rpc_error,
)
from meshwarden.sidecar import usage
from meshwarden.sidecar.call import Call, Reply
from meshwarden.sidecar.catalog import Endpoint
from meshwarden.sidecar.peer_channels import PeerChannels
from meshwarden.trace_context import metadata_for
from meshwarden.v1 import peer_pb2

# What gRPC core says when the TLS handshake fails on who the server is.
_IDENTITY_FAILURES = ("Peer name", "Hostname Verification", "certificate verify failed", "CERTIFICATE_VERIFY_FAILED")
# What it says when no connection could be made at all: the call never left this sidecar.
_CONNECT_FAILURES = ("failed to connect", "Connection refused", "connections to all backends failing")


class Send:
    def __init__(self, channels: PeerChannels, clock: Clock) -> None:
        self._channels, self._clock = channels, clock

    async def __call__(self, call: Call) -> Reply:
        target = call.target
        if target is None:
            raise RuntimeError("peer.Send needs a target: routing must run before it")
        if not target.spiffe_id:
            raise PeerIdentityMismatch(
                f"the catalog lists no SPIFFE ID for instance {target.instance_id}; not calling it"
            )
        request = peer_pb2.PeerCall(
            call_id=call.call_id,
            capability=call.capability,
            payload_json=call.payload,
            target_instance_id=target.instance_id,
            schema_hash=target.capability.schema_hash,
            caller_agent=call.caller.agent,
            caller_instance_id=call.caller.instance_id,
            session_id=call.session_id,
            workflow_id=call.workflow_id,
            attempt=call.attempt,
            cost_estimate_micro_usd=call.cost_estimate_micro_usd,
            idempotency_key=call.idempotency_key,
            parent_call_id=call.parent_call_id,
        )
        timeout = call.next_hop_timeout_s(self._clock.monotonic())
        try:
            reply = await self._channels.stub(target.peer_address, target.spiffe_id).Deliver(
                request, timeout=timeout, metadata=metadata_for(call.traceparent, call.tracestate)
            )
        except grpc.aio.AioRpcError as err:
            raise _translate(err, target) from err
        reported = usage.from_proto(reply.usage if reply.HasField("usage") else None)
        call.record.usage = reported
        return Reply(reply.result_json, reply.instance_id, reply.agent, reply.version, reported)


def _translate(err: grpc.aio.AioRpcError, target: Endpoint) -> MeshError:
    sent = from_rpc_error(err)
    if sent is not None:  # the peer sidecar refused or its agent failed: pass it on as it is
        return sent
    where = f"{target.agent} {target.version} (instance {target.instance_id} at {target.peer_address})"
    if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"{where} did not answer within the deadline")
    details = err.details() or ""
    if any(sign in details for sign in _IDENTITY_FAILURES):
        return PeerIdentityMismatch(f"{where} did not prove it is {target.spiffe_id}: {details}")
    if err.code() == grpc.StatusCode.UNAVAILABLE and any(sign in details for sign in _CONNECT_FAILURES):
        return NotSent(f"could not connect to {where}: {details}")
    return PeerUnavailable(
        f"the call to {where} failed in transit ({err.code().name}: {details}); it may have started there, "
        "so the mesh resends it only when it carries an idempotency key"
    )
