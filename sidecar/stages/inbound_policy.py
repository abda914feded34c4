"""Inbound: decided again at the callee's sidecar, with the caller's SPIFFE ID from mTLS
(zero trust: a permissive or compromised caller sidecar cannot pass a callee that denies)."""

from __future__ import annotations

from meshwarden.clock import Clock
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Layer
from meshwarden.sidecar.policy import Direction
from meshwarden.sidecar.stages.policy_gate import PolicyGate


class InboundPolicy(PolicyGate):
    direction = Direction.INBOUND


def layer(holder: PolicyHolder, clock: Clock, allow_without_policy: bool) -> Layer:
    return lambda next: InboundPolicy(next, holder, clock, allow_without_policy)
