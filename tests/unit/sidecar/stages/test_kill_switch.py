from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from meshwarden.errors import KillSwitchEngaged
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call, Caller, Reply
from meshwarden.sidecar.controls import Controls
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.sidecar.stages import kill_switch
from meshwarden.v1 import controls_pb2 as K
from tests.unit.sidecar.fakes import Recorder, call, catalog_of, instance


def engaged(controls: Controls, kind: int, value: str = "", revision: int = 1) -> None:
    controls.apply(
        K.ControlsUpdate(
            revision=revision,
            kill_switches=[K.KillSwitch(id=f"ks-{revision}", scope_kind=kind, scope_value=value, reason="stop it")],  # type: ignore[arg-type]
        )
    )


def outbound(controls: Controls, inner: Recorder) -> kill_switch.Outbound:
    catalog = catalog_of(instance("b-1", "billing", "1.0.0"), instance("b-2", "billing", "2.0.0"))
    stage = kill_switch.outbound(controls, LocalAgent("caller", "caller-1", "127.0.0.1:1", ""), PolicyHolder(), catalog)
    return stage(inner)  # type: ignore[return-value]


async def test_no_switch_passes_every_call_through_untouched() -> None:
    inner = Recorder()
    c = call()
    await outbound(Controls(None, lambda: 0.0), inner)(c)
    assert inner.calls == [c] and c.record.kill_switch_id == ""


async def test_a_matching_call_is_refused_naming_the_switch_and_recorded() -> None:
    controls, inner = Controls(None, lambda: 0.0), Recorder()
    engaged(controls, K.SCOPE_KIND_SESSION, "s-1")
    stopped = call(session_id="s-1")
    with pytest.raises(KillSwitchEngaged, match="refused by kill switch ks-1 \\(session s-1\\): stop it"):
        await outbound(controls, inner)(stopped)
    assert stopped.record.kill_switch_id == "ks-1" and inner.calls == []
    await outbound(controls, inner)(call(session_id="s-2"))
    assert len(inner.calls) == 1


async def test_the_caller_steers_around_killed_callees_and_refuses_when_none_is_left() -> None:
    controls, inner = Controls(None, lambda: 0.0), Recorder()
    engaged(controls, K.SCOPE_KIND_VERSION, "billing@1.0.0")
    await outbound(controls, inner)(call())
    assert inner.calls[0].avoid_instances == {"b-1"}
    engaged(controls, K.SCOPE_KIND_AGENT, "billing", revision=2)
    with pytest.raises(KillSwitchEngaged, match="ks-2"):
        await outbound(controls, inner)(call())


async def test_the_callee_matches_its_own_agent_and_the_caller_from_mtls() -> None:
    controls, inner = Controls(None, lambda: 0.0), Recorder()
    local = LocalAgent("billing", "b-1", "127.0.0.1:1", "")
    stage = kill_switch.inbound(controls, local, PolicyHolder())(inner)
    engaged(controls, K.SCOPE_KIND_AGENT, "frontdesk")
    from_frontdesk = replace(call(), caller=Caller("frontdesk", "f-1", "spiffe://td/agent/frontdesk"))
    with pytest.raises(KillSwitchEngaged):
        await stage(from_frontdesk)
    await stage(call())
    engaged(controls, K.SCOPE_KIND_INSTANCE, "b-1", revision=2)
    with pytest.raises(KillSwitchEngaged, match="instance b-1"):
        await stage(call())


async def test_a_call_in_flight_is_cancelled_into_a_kill_switch_error() -> None:
    controls, hold = Controls(None, lambda: 0.0), asyncio.Event()
    inner = Recorder(hold=hold)
    stage = outbound(controls, inner)
    doomed, spared = call(capability="billing.refund"), call(capability="other")
    running = [asyncio.create_task(stage(doomed)), asyncio.create_task(stage(spared))]
    await asyncio.sleep(0)
    engaged(controls, K.SCOPE_KIND_CAPABILITY, "billing.refund")
    with pytest.raises(KillSwitchEngaged, match="cancelled in flight by kill switch ks-1"):
        await running[0]
    assert doomed.record.kill_switch_id == "ks-1" and not running[1].done()
    hold.set()
    assert isinstance(await running[1], Reply)


async def test_a_cancellation_that_is_not_the_switchs_stays_a_cancellation() -> None:
    controls, hold = Controls(None, lambda: 0.0), asyncio.Event()
    task = asyncio.create_task(outbound(controls, Recorder(hold=hold))(call()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_refusal_by_the_other_sidecar_names_the_switch_in_this_calls_record() -> None:
    async def callee_refuses(c: Call) -> Reply:  # as the peer stage rebuilds it: the id is data, not words
        raise KillSwitchEngaged.rebuilt("stopped by an operator", {"switch_id": "ks-00ab", "scope": "agent billing"})

    refused = call()
    with pytest.raises(KillSwitchEngaged):
        await kill_switch.outbound(
            Controls(None, lambda: 0.0),
            LocalAgent("caller", "caller-1", "127.0.0.1:1", ""),
            PolicyHolder(),
            catalog_of(),
        )(callee_refuses)(refused)
    assert refused.record.kill_switch_id == "ks-00ab"
