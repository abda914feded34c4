"""Reserve a call's worst-case cost against every budget in its scope before it leaves, settle
to its measured cost after, release on failure or cancellation. Written once for every kind
of call: agent calls that carry `cost_estimate_micro_usd`, and model calls (the gateway sets
the estimate from the input and the output cap).

The budgets in scope: the calling agent's team and name, the call's workflow, its session
(a per-session cap, drawn on separately by each session) and, for a model call, the model
(`call.capability`). The reservation comes from this sidecar's slices (sidecar.budget_ledger),
without a registry round trip unless a slice is short. The measured cost is `reply.usage`
(the model gateway's, or what the callee agent reported; none: nothing); a call that fails
is charged nothing (a stream cut off midway ends with a reply that carries what it used).

A refusal is BudgetExhausted (RESOURCE_EXHAUSTED) naming the budget, its scope, limit, spent
and reserved. Where the caller gave a `downgrade` (the model gateway: a cheaper fallback the
catalog declares and policy allows), the stage asks it for a cheaper call that fits what
remains, runs that instead, and the receipt names what ran (`budget_downgraded_to`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from meshwarden.errors import BudgetExhausted
from meshwarden.sidecar.budget_ledger import BudgetLedger, Reservation, Target, call_scope
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call, Handler, Layer, Reply

# Given the refused call and what remains of the tightest budget, a cheaper call (another
# model, a lower cost estimate) that policy allows, or None. Synchronous and cheap: it runs
# on the event loop, after a refusal only.
Downgrade = Callable[[Call, BudgetExhausted], Call | None]


class Budget:
    def __init__(self, next: Handler, ledger: BudgetLedger, policy: PolicyHolder, downgrade: Downgrade | None) -> None:
        self._next, self._ledger, self._policy, self._downgrade = next, ledger, policy, downgrade

    async def __call__(self, call: Call) -> Reply:
        amount = call.cost_estimate_micro_usd
        if self._ledger.empty or amount is None or amount <= 0:
            return await self._next(call)
        targets = self._targets(call)
        if not targets:
            return await self._next(call)
        try:
            reservation = await self._ledger.reserve(targets, amount, call.deadline, call.capability)
        except BudgetExhausted as refusal:
            call.record.budget_short = refusal.budget_id  # refused, or downgraded: the receipt says which
            call, targets, reservation = await self._downgraded(call, refusal)
        record = call.record
        record.budget_ids = reservation.budget_ids
        record.budget_reserved_micro_usd = reservation.amount
        try:
            reply = await self._next(call)
        except BaseException:
            self._ledger.release(reservation)
            raise
        self._settle(call, reservation, reply.usage.cost_micro_usd if reply.usage is not None else 0)
        return reply

    def _targets(self, call: Call) -> list[Target]:
        active = self._policy.active
        agent = call.caller.agent
        team = active.team_of(agent) if active is not None else ""
        return self._ledger.in_scope(
            call_scope(team, agent, call.workflow_id, call.session_id, call.kind, call.capability)
        )

    def _settle(self, call: Call, reservation: Reservation, cost: int) -> None:
        self._ledger.settle(reservation, cost)
        call.record.budget_settled_micro_usd = cost

    async def _downgraded(self, call: Call, refusal: BudgetExhausted) -> tuple[Call, list[Target], Reservation]:
        cheaper = self._downgrade(call, refusal) if self._downgrade is not None else None
        amount = cheaper.cost_estimate_micro_usd if cheaper is not None else None
        if cheaper is None or amount is None or amount <= 0:
            raise refusal
        cheaper = replace(cheaper, record=call.record)
        targets = self._targets(cheaper)
        reservation = await self._ledger.reserve(targets, amount, cheaper.deadline, cheaper.capability)
        call.record.budget_downgraded_to = cheaper.capability
        return cheaper, targets, reservation


def layer(ledger: BudgetLedger, policy: PolicyHolder, downgrade: Downgrade | None = None) -> Layer:
    return lambda next: Budget(next, ledger, policy, downgrade)
