"""Refuse the calls an operator's kill switch stops, and cancel those already in flight.

Both sidecars of a call check it, each with what it knows for sure: the caller's sidecar its
own agent (instance, name, version, team), the call (session, workflow, capability) and, once
routing chose, the callee; the callee's sidecar its own agent, the caller from mTLS, and the
call. Before routing, the caller's sidecar also steers away from killed callees: the instances
a switch names are avoided while another instance qualifies, and when every instance of the
capability is killed the call is refused here, before it leaves.

A matching call in flight is cancelled: its task is cancelled through the pipeline, which
cancels the RPC to the callee's sidecar and from there to the agent, whose handler sees
asyncio.CancelledError. The stage turns its own cancellation into KillSwitchEngaged naming
the switch, and writes the switch id into the call's record for spans and receipts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from meshwarden.errors import KillSwitchEngaged
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call, Handler, Layer, Reply
from meshwarden.sidecar.catalog import Catalog, Endpoint
from meshwarden.sidecar.controls import (
    AGENT,
    CAPABILITY,
    INSTANCE,
    MCP_SERVER,
    MODEL,
    PROVIDER,
    SESSION,
    TEAM,
    TOOL,
    VERSION,
    WORKFLOW,
    Controls,
    Fact,
    InFlight,
)
from meshwarden.sidecar.local_agent import LocalAgent


class _Facts:
    """What a call is, for matching switches: the local agent, the other party, the call."""

    def __init__(self, local: LocalAgent, policy: PolicyHolder) -> None:
        self._local, self._policy = local, policy

    def team(self, agent: str) -> str:
        active = self._policy.active
        return active.team_of(agent) if active is not None else ""

    def agent(self, instance_id: str, agent: str, version: str) -> Iterator[Fact]:
        yield (AGENT, agent)
        if instance_id:
            yield (INSTANCE, instance_id)
        if version:
            yield (VERSION, f"{agent}@{version}")
        team = self.team(agent)
        if team:
            yield (TEAM, team)

    def local(self) -> Iterator[Fact]:
        registration = self._local.registration
        version = str(registration.version) if registration is not None else ""
        return self.agent(self._local.instance_id, self._local.name, version)

    def endpoint(self, ep: Endpoint) -> Iterator[Fact]:
        return self.agent(ep.instance_id, ep.agent, str(ep.version))

    @staticmethod
    def call(call: Call) -> Iterator[Fact]:
        yield (CAPABILITY, call.capability)
        if call.model is not None:  # a model call: the model asked for, its provider, and the one answering now
            yield (MODEL, call.capability)
            yield (PROVIDER, call.model.provider)
            outcome = call.record.model
            if outcome is not None and outcome.provider:
                yield (PROVIDER, outcome.provider)
        if call.kind == "tool":  # "server.tool": stopped by --tool, or --mcp-server with its server
            yield (TOOL, call.capability)
            yield (MCP_SERVER, call.capability.partition(".")[0])
        if call.session_id:
            yield (SESSION, call.session_id)
        if call.workflow_id:
            yield (WORKFLOW, call.workflow_id)


class _KillSwitch:
    def __init__(self, next: Handler, controls: Controls, facts: _Facts) -> None:
        self._next, self._controls, self._facts = next, controls, facts

    def known_facts(self, call: Call) -> Iterator[Fact]:
        raise NotImplementedError

    def before(self, call: Call) -> Call:
        """Refuses a call a switch stops; returns the call to pass on."""
        switch = self._controls.matching(self.known_facts(call))
        if switch is not None:
            call.record.kill_switch_id = switch.id
            raise KillSwitchEngaged(switch.id, switch.scope, switch.reason, call.capability)
        return call

    async def __call__(self, call: Call) -> Reply:
        if not self._controls.empty:
            call = self.before(call)
        entry = InFlight(self.known_facts, call, asyncio.current_task())
        self._controls.track(entry)
        try:
            return await self._next(call)
        except KillSwitchEngaged as err:  # the other side's sidecar refused or cancelled it
            if not call.record.kill_switch_id:
                call.record.kill_switch_id = err.switch_id
            raise
        except asyncio.CancelledError:
            switch = entry.killed_by
            if switch is None or entry.task is None or entry.task.uncancel() > 0:
                raise  # not (only) ours: the caller went away or the sidecar is stopping
            call.record.kill_switch_id = switch.id
            raise KillSwitchEngaged(switch.id, switch.scope, switch.reason, call.capability, in_flight=True) from None
        finally:
            self._controls.untrack(entry)


class Outbound(_KillSwitch):
    def __init__(self, next: Handler, controls: Controls, facts: _Facts, catalog: Catalog) -> None:
        super().__init__(next, controls, facts)
        self._catalog = catalog

    def known_facts(self, call: Call) -> Iterator[Fact]:
        yield from self._facts.call(call)
        yield from self._facts.local()
        target = call.record.target  # set by routing once it chose
        if target is not None:
            yield from self._facts.endpoint(target)

    def before(self, call: Call) -> Call:
        call = super().before(call)
        if not self._controls.kills_callees:
            return call
        endpoints = self._catalog.endpoints(call.capability)
        killed = [(ep, s) for ep in endpoints if (s := self._controls.matching(self._facts.endpoint(ep)))]
        if not killed:
            return call
        if len(killed) == len(endpoints):  # nothing left to route to: say which switch
            switch = killed[0][1]
            call.record.kill_switch_id = switch.id
            raise KillSwitchEngaged(switch.id, switch.scope, switch.reason, call.capability)
        return replace(call, avoid_instances=call.avoid_instances | {ep.instance_id for ep, _ in killed})


class Inbound(_KillSwitch):
    def known_facts(self, call: Call) -> Iterator[Fact]:
        return _inbound_facts(self._facts, call)


def _inbound_facts(facts: _Facts, call: Call) -> Iterator[Fact]:
    yield from facts.call(call)
    yield from facts.local()
    yield from facts.agent(call.caller.instance_id, call.caller.agent, "")


class TrackedRun:
    """A task delivering an inbound call apart from the call's own task, within reach of the
    kill switches that match the call until `stop_tracking`."""

    __slots__ = ("_controls", "_entry")

    def __init__(self, controls: Controls, entry: InFlight) -> None:
        self._controls, self._entry = controls, entry

    def stop_tracking(self) -> None:
        self._controls.untrack(self._entry)

    @property
    def killed_by_switch(self) -> str:
        """The id of the kill switch that cancelled the task ("" when none did)."""
        return self._entry.killed_by.id if self._entry.killed_by is not None else ""


def inbound_runs(
    controls: Controls, local: LocalAgent, policy: PolicyHolder
) -> Callable[[Call, asyncio.Task[Any]], TrackedRun]:
    """Tracks a task that delivers an inbound call apart from the call's own (a keyed call that
    goes on after its caller left, stages/idempotency.py), so that a kill switch matching the
    call cancels it as it cancels the call: an operator's stop reaches the agent either way."""
    facts = _Facts(local, policy)

    def track(call: Call, task: asyncio.Task[Any]) -> TrackedRun:
        entry = InFlight(lambda c: _inbound_facts(facts, c), call, task)
        controls.track(entry)
        return TrackedRun(controls, entry)

    return track


def outbound(controls: Controls, local: LocalAgent, policy: PolicyHolder, catalog: Catalog) -> Layer:
    facts = _Facts(local, policy)
    return lambda next: Outbound(next, controls, facts, catalog)


def inbound(controls: Controls, local: LocalAgent, policy: PolicyHolder) -> Layer:
    facts = _Facts(local, policy)
    return lambda next: Inbound(next, controls, facts)
