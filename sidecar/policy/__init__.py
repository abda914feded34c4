"""The policy decision engine: Cedar bundles evaluated for one local agent, cheaply.

The outbound and inbound policy stages call `ActivePolicy.decide`; the bundle loader builds
one ActivePolicy per verified revision and swaps it in whole.
"""

from meshwarden.sidecar.policy.active_policy import ActivePolicy, Slicing
from meshwarden.sidecar.policy.cedar_values import ArgumentsNotMappable
from meshwarden.sidecar.policy.decision import Caller, CallFacts, Decision, Direction

__all__ = ["ActivePolicy", "ArgumentsNotMappable", "CallFacts", "Caller", "Decision", "Direction", "Slicing"]
