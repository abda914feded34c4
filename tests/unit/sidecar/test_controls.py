from __future__ import annotations

import asyncio
from pathlib import Path

from meshwarden.sidecar.controls import AGENT, CAPABILITY, SESSION, Controls, InFlight
from meshwarden.v1 import controls_pb2 as K


def update(revision: int, *switches: K.KillSwitch, isolations: tuple[K.Isolation, ...] = ()) -> K.ControlsUpdate:
    return K.ControlsUpdate(revision=revision, kill_switches=switches, isolations=isolations)


def switch(id: str, kind: int, value: str = "", expires_at_s: float | None = None) -> K.KillSwitch:
    message = K.KillSwitch(id=id, scope_kind=kind, scope_value=value, reason="because")  # type: ignore[arg-type]
    if expires_at_s is not None:
        message.expires_at.FromMicroseconds(int(expires_at_s * 1e6))
    return message


def test_an_empty_set_matches_nothing_and_switches_match_by_scope() -> None:
    controls = Controls(None, lambda: 100.0)
    assert controls.empty and controls.matching([(AGENT, "billing")]) is None
    new = controls.apply(
        update(1, switch("ks-1", K.SCOPE_KIND_AGENT, "billing"), switch("ks-2", K.SCOPE_KIND_SESSION, "s"))
    )
    assert [s.id for s in new] == ["ks-1", "ks-2"] and not controls.empty and controls.kills_callees
    assert controls.matching([(CAPABILITY, "echo"), (AGENT, "billing")]).id == "ks-1"  # type: ignore[union-attr]
    assert controls.matching([(SESSION, "s")]).id == "ks-2"  # type: ignore[union-attr]
    assert controls.matching([(AGENT, "kb"), (SESSION, "other")]) is None
    assert controls.apply(update(2, switch("ks-2", K.SCOPE_KIND_SESSION, "s"))) == []  # ks-1 lifted, nothing new
    assert controls.matching([(AGENT, "billing")]) is None and not controls.kills_callees
    controls.apply(update(3, switch("ks-3", K.SCOPE_KIND_ALL)))
    assert controls.matching([]).id == "ks-3"  # type: ignore[union-attr]
    controls.apply(update(4))
    assert controls.empty and controls.revision == 4


def test_a_switch_ends_at_its_expiry_by_the_sidecars_own_clock() -> None:
    now = [100.0]
    controls = Controls(None, lambda: now[0])
    controls.apply(update(1, switch("ks-1", K.SCOPE_KIND_AGENT, "billing", expires_at_s=110.0)))
    assert controls.matching([(AGENT, "billing")]) is not None
    now[0] = 110.0
    assert controls.matching([(AGENT, "billing")]) is None


async def test_a_new_switch_cancels_the_matching_calls_in_flight_only() -> None:
    controls = Controls(None, lambda: 100.0)
    hold = asyncio.Event()
    billing = asyncio.create_task(hold.wait())
    kb = asyncio.create_task(hold.wait())
    to_billing = InFlight(lambda agent: [(AGENT, agent)], "billing", billing)
    to_kb = InFlight(lambda agent: [(AGENT, agent)], "kb", kb)
    controls.track(to_billing)
    controls.track(to_kb)
    controls.apply(update(1, switch("ks-1", K.SCOPE_KIND_AGENT, "billing")))
    await asyncio.sleep(0)
    assert billing.cancelled() and to_billing.killed_by is not None and to_billing.killed_by.id == "ks-1"
    assert not kb.done() and to_kb.killed_by is None
    controls.apply(update(2, switch("ks-1", K.SCOPE_KIND_AGENT, "billing")))  # no new switch: nothing more
    assert not kb.done()
    hold.set()
    await kb


def test_the_set_is_persisted_and_enforced_again_after_a_restart(tmp_path: Path) -> None:
    first = Controls(tmp_path, lambda: 100.0)
    first.apply(
        update(7, switch("ks-1", K.SCOPE_KIND_AGENT, "billing"), isolations=(K.Isolation(agent="kb", version="1.0.0"),))
    )
    assert (tmp_path / "controls" / "last.pb").stat().st_mode & 0o777 == 0o600
    isolated: list[frozenset[tuple[str, str]]] = []
    again = Controls(tmp_path, lambda: 100.0)
    again.on_isolation(isolated.append)
    again.load_last()
    assert again.revision == 7 and again.matching([(AGENT, "billing")]) is not None
    assert isolated[-1] == frozenset({("kb", "1.0.0")})
    assert not again.from_registry.is_set()  # still waiting for the registry's own set
