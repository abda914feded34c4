"""Send the call to the chosen instance's sidecar: the innermost outbound handler.

A failure is told apart by its gRPC code and structured details, never by gRPC's wording:
an error the callee's sidecar sent comes back as the same class with its data
(meshwarden.error_status); a failure gRPC reports while the channel to the peer never held a
connection (it was not ready when the call was made and its last connection attempt failed:
refused, timed out, or a failed TLS handshake) certainly never left, so it is NotSent, or
PeerIdentityMismatch when the peer, asked directly (peer_probe), proves another SPIFFE ID than
the catalog lists; any other failure may have started at the callee (PeerUnavailable).
"""

from __future__ import annotations

import grpc

from meshwarden import error_status
from meshwarden.clock import Clock
from meshwarden.errors import DeadlineExceeded, MeshError, NotSent, PeerIdentityMismatch, PeerUnavailable
from meshwarden.sidecar import peer_probe
from meshwarden.sidecar.call import Call, Reply
from meshwarden.sidecar.catalog import Endpoint
from meshwarden.sidecar.peer_channels import PeerChannels
from meshwarden.sidecar.wire import deadlines, peer_call
from meshwarden.trace_context import metadata_for

_READY = grpc.ChannelConnectivity.READY
_PROBE_S = 0.25  # at most this long asking a peer that could not be reached who it is
_NO_CONNECTION = frozenset({grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN})


class Send:
    def __init__(self, channels: PeerChannels, clock: Clock) -> None:
        self._channels, self._clock = channels, clock

    async def __call__(self, call: Call) -> Reply:
        target = call.target
        if target is None:
            raise RuntimeError("peer.Send needs a target: routing must run before it")
        if not target.spiffe_id:
            raise PeerIdentityMismatch(
                f"the catalog lists no SPIFFE ID for instance {target.instance_id}; not calling it",
                instance_id=target.instance_id,
            )
        stub = self._channels.stub(target.peer_address, target.spiffe_id)
        was_ready = self._channels.connection_state(target.peer_address, target.spiffe_id) is _READY
        try:
            reply = await stub.Deliver(
                peer_call.to_peer_call(call, target),
                timeout=deadlines.next_hop_timeout_s(call, self._clock.monotonic()),
                metadata=metadata_for(call.traceparent, call.tracestate),
            )
        except grpc.aio.AioRpcError as err:
            never_connected = not was_ready and (
                self._channels.connection_state(target.peer_address, target.spiffe_id) in _NO_CONNECTION
            )
            failure = translate(err, target, never_connected=never_connected)
            if isinstance(failure, NotSent):
                failure = await self._impostor(call, target) or failure
            raise failure from err
        return peer_call.to_reply(reply)

    async def _impostor(self, call: Call, target: Endpoint) -> PeerIdentityMismatch | None:
        """PeerIdentityMismatch when the peer that could not be reached proves another identity
        than the catalog lists (peer_probe); None otherwise."""
        left_s = call.deadline - self._clock.monotonic()
        presented = await peer_probe.presented_spiffe_id(
            target.peer_address, self._channels.trust_bundle_pem(), min(_PROBE_S, max(left_s, 0.0))
        )
        if presented is None or presented == target.spiffe_id:
            return None
        return PeerIdentityMismatch(
            f"{target.agent} {target.version} (instance {target.instance_id} at {target.peer_address}) did not "
            f"prove it is {target.spiffe_id}: it presents {presented}; the call was not sent",
            instance_id=target.instance_id,
        )


def translate(err: grpc.aio.AioRpcError, target: Endpoint, *, never_connected: bool) -> MeshError:
    """The MeshError for a failed Deliver to `target`; `never_connected`: the channel held no
    connection before or after the call."""
    sent = error_status.from_rpc_error(err, instance_id=target.instance_id)
    if sent is not None:  # the peer sidecar refused or its agent failed: pass it on as it is
        return sent
    where = f"{target.agent} {target.version} (instance {target.instance_id} at {target.peer_address})"
    if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"{where} did not answer within the deadline", instance_id=target.instance_id)
    if err.code() == grpc.StatusCode.UNAVAILABLE and never_connected:
        return NotSent(
            f"could not connect to {where}, or it did not prove it is {target.spiffe_id} in the TLS handshake "
            f"({err.details()}); the call was not sent",
            instance_id=target.instance_id,
        )
    return PeerUnavailable(
        f"the call to {where} failed in transit ({err.code().name}: {err.details()}); it may have started there, "
        "so the mesh resends it only when it carries an idempotency key",
        instance_id=target.instance_id,
    )
