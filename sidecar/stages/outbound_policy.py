"""Outbound: may the local agent call this capability, with these arguments (or this model, at
this worst-case cost)? Decided by the active Cedar bundle before anything leaves the caller's
sidecar."""

from __future__ import annotations

from meshwarden.clock import Clock
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call, Layer, Reply
from meshwarden.sidecar.policy import Direction
from meshwarden.sidecar.stages import model_policy
from meshwarden.sidecar.stages.policy_gate import PolicyGate


class OutboundPolicy(PolicyGate):
    direction = Direction.OUTBOUND

    async def __call__(self, call: Call) -> Reply:
        if call.model is not None:  # a model call: Cedar's CallModel on the model (model_policy.py)
            model_policy.decide(self._holder.active, call, self._allow_without_policy)
            return await self._next(call)
        return await super().__call__(call)


def layer(holder: PolicyHolder, clock: Clock, allow_without_policy: bool) -> Layer:
    return lambda next: OutboundPolicy(next, holder, clock, allow_without_policy)
