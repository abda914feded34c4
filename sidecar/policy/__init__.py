"""The policy decision engine: Cedar bundles evaluated for one local agent, cheaply.

The outbound and inbound policy stages call `ActivePolicy.decide`; the bundle loader builds
one ActivePolicy per verified revision and swaps it in whole.
"""

from sidecar.policy.active_policy import ActivePolicy, Slicing
from sidecar.policy.cedar_values import ArgumentsNotMappable
from sidecar.policy.decision import Caller, CallFacts, Decision, Direction

__all__ = ["ActivePolicy", "ArgumentsNotMappable", "CallFacts", "Caller", "Decision", "Direction", "Slicing"]
