"""Inbound: is this call for us? The caller routed from its own catalog view, which may be
stale; a call for another instance or a capability we do not serve is refused, never
rerouted, so the caller's sidecar learns the truth and can try elsewhere."""

from __future__ import annotations

from dataclasses import replace

from meshwarden.errors import NotRegistered, NotSent, UnknownCapability
from meshwarden.sidecar.call import Call, Handler, Layer, Reply
from meshwarden.sidecar.local_agent import LocalAgent


class TargetCheck:
    def __init__(self, next: Handler, local: LocalAgent) -> None:
        self._next, self._local = next, local

    async def __call__(self, call: Call) -> Reply:
        if call.target_instance_id and call.target_instance_id != self._local.instance_id:
            raise NotSent(
                f"this sidecar serves instance {self._local.instance_id}, not {call.target_instance_id}; "
                "the caller's catalog is stale"
            )
        if self._local.registration is None:
            raise NotRegistered(f"agent {self._local.name} has not registered with its sidecar yet")
        endpoint = self._local.endpoint(call.capability)
        if endpoint is None:
            raise UnknownCapability(call.capability)
        call.record.target, call.record.attempt = endpoint, call.attempt
        return await self._next(replace(call, target=endpoint))


def layer(local: LocalAgent) -> Layer:
    return lambda next: TargetCheck(next, local)
