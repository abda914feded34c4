"""Outbound: may the local agent call this capability, with these arguments? Decided by the
active Cedar bundle before anything leaves the caller's sidecar."""

from __future__ import annotations

from meshwarden.clock import Clock
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Layer
from meshwarden.sidecar.policy import Direction
from meshwarden.sidecar.stages.policy_gate import PolicyGate


class OutboundPolicy(PolicyGate):
    direction = Direction.OUTBOUND


def layer(holder: PolicyHolder, clock: Clock, allow_without_policy: bool) -> Layer:
    return lambda next: OutboundPolicy(next, holder, clock, allow_without_policy)
