"""May this sidecar's agent queue a task of this kind? Decided by the active Cedar bundle as a
call of the kind's capability with the task's input as arguments (outbound, as this agent):
queueing work for the agents that serve a kind is asking them to do it, so an agent may submit
what it may call. Default deny without an active bundle, as for calls."""

from __future__ import annotations

from meshwarden.clock import Clock
from meshwarden.errors import BadPayload, PolicyDenied
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.sidecar.policy import ArgumentsNotMappable, Caller, CallFacts, Direction
from meshwarden.v1 import tasks_pb2


class SubmissionPolicy:
    def __init__(self, holder: PolicyHolder, local: LocalAgent, clock: Clock, allow_without_policy: bool) -> None:
        self._holder, self._local, self._clock = holder, local, clock
        self._allow_without_policy = allow_without_policy

    def check(self, request: tasks_pb2.SubmitTaskRequest) -> None:
        """Returns when the agent may submit it; PolicyDenied (or BadPayload) naming why not."""
        active = self._holder.active
        who = self._local.spiffe_id or self._local.name
        if active is None:
            if self._allow_without_policy:
                return
            raise PolicyDenied(
                f"{who} may not submit a {request.kind} task: no policy bundle is active on this sidecar (default "
                "deny); push one with `meshwarden bundle push`"
            )
        facts = CallFacts(now_unix_s=int(self._clock.wall()), workflow_id=request.workflow_id)
        caller = Caller(self._local.name, self._local.spiffe_id)
        try:
            decision = active.decide(
                Direction.OUTBOUND, caller, request.kind, request.input_json.encode() or b"{}", facts
            )
        except ArgumentsNotMappable as exc:
            raise BadPayload(str(exc)) from exc
        if not decision.allowed:
            raise PolicyDenied(
                f"{who} may not submit a {request.kind} task (it may not call {request.kind}): {decision.reason}",
                policy_ids=decision.policy_ids,
            )
