"""Inbound: the caller is the SPIFFE ID from the mTLS handshake (set by peer_api). A caller
whose certificate names no agent's sidecar is refused here, with the reason peer_api found,
inside the pipeline so that the refusal leaves a receipt, a metric and a span. A calling
sidecar that names a different agent in the request is refused, not believed: either it is
misconfigured or it is trying to speak for someone else; both deserve a loud refusal."""

from __future__ import annotations

import logging

from meshwarden.errors import Unidentified
from meshwarden.sidecar.call import Call, Handler, Layer, Reply

log = logging.getLogger(__name__)


class PeerIdentity:
    def __init__(self, next: Handler) -> None:
        self._next = next

    async def __call__(self, call: Call) -> Reply:
        if call.identity_problem:
            raise Unidentified(call.identity_problem)
        if not call.caller.spiffe_id:
            raise Unidentified("the calling sidecar presented no SPIFFE identity")
        if call.claimed_caller and call.claimed_caller != call.caller.agent:
            log.warning(
                "refused call %s: the request claims agent %s but the certificate is %s",
                call.call_id,
                call.claimed_caller,
                call.caller.spiffe_id,
            )
            raise Unidentified(
                f"the request claims to come from agent {call.claimed_caller!r} but the caller's certificate "
                f"is {call.caller.spiffe_id}; identity comes from the certificate only"
            )
        return await self._next(call)


def layer() -> Layer:
    return lambda next: PeerIdentity(next)
