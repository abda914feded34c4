"""What the outbound and inbound policy stages share: ask the active policy, refuse with the
deciding policy's id and reason. Each direction is its own stage module (outbound_policy,
inbound_policy) so the pipeline reads as what it does."""

from __future__ import annotations

import logging

from meshwarden.clock import Clock
from meshwarden.errors import BadPayload, PolicyDenied
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call, Handler, Reply
from meshwarden.sidecar.policy import ArgumentsNotMappable, Caller, CallFacts, Decision, Direction

log = logging.getLogger(__name__)


class PolicyGate:
    direction: Direction

    def __init__(self, next: Handler, holder: PolicyHolder, clock: Clock, allow_without_policy: bool) -> None:
        self._next, self._holder, self._clock = next, holder, clock
        self._allow_without_policy = allow_without_policy

    async def __call__(self, call: Call) -> Reply:
        active = self._holder.active  # read once: a swap mid-call does not change this call's answer
        if active is None:
            if self._allow_without_policy:
                return await self._next(call)
            raise PolicyDenied(
                f"{call.caller.agent} may not call {call.capability}: no policy bundle is active on this sidecar "
                "(default deny); push one with `meshwarden bundle push`, or see `meshwarden bundle status`"
            )
        facts = CallFacts(
            now_unix_s=int(self._clock.wall()),
            session_id=call.session_id,
            workflow_id=call.workflow_id,
            cost_estimate_micro_usd=call.cost_estimate_micro_usd,
        )
        caller = Caller(call.caller.agent, call.caller.spiffe_id)
        try:
            if call.kind == "tool":  # Action::"CallTool" on the declared Tool (the tool check found it)
                tool = active.mcp_servers.tool(call.capability)
                decision = (
                    active.decide_tool(caller, tool, call.cedar_arguments, facts)
                    if tool is not None
                    else Decision(False, (), f"{active.label} declares no MCP tool {call.capability}")
                )
            else:
                decision = active.decide(self.direction, caller, call.capability, call.cedar_arguments, facts)
        except ArgumentsNotMappable as exc:
            raise BadPayload(str(exc)) from exc
        call.record.policy_decision = "allow" if decision.allowed else "deny"
        call.record.policy_ids = decision.policy_ids
        call.record.approval_risks, call.record.approval_ttl_s = decision.approval_risks, decision.approval_ttl_s
        if not decision.allowed:  # the reason names the deciding policies and the bundle revision
            raise PolicyDenied(
                f"{call.caller.spiffe_id or call.caller.agent} may not call {call.capability} "
                f"({self.direction.value} policy): {decision.reason}",
                policy_ids=decision.policy_ids,
            )
        return await self._next(call)
