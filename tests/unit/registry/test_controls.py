from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from meshwarden.control_scopes import parse_version_target
from meshwarden.registry.audit import Audit
from meshwarden.registry.authz import Caller
from meshwarden.registry.control_acks import Acknowledgements
from meshwarden.registry.controls import Controls, ControlsChanged
from meshwarden.registry.errors import InvalidInput, PermissionDenied, UnknownControl
from meshwarden.registry.store import KillEffect, Stores
from meshwarden.registry.store.sqlite import DB_NAME, SCHEMA_VERSION, open_sqlite
from meshwarden.v1 import controls_pb2 as K
from tests.unit.registry.conftest import WITHOUT_RECEIPT_TASK_COLUMN
from tests.unit.sidecar.fakes import FakeClock

OPERATOR = Caller(None, 0.0, True, False, "ipv4:127.0.0.1:1", operator_id="operator:sha256:abc", claimed_user="ann")


def _controls(stores: Stores, clock: FakeClock | None = None, publish: object = None) -> Controls:
    clock = clock or FakeClock()
    return Controls(stores.controls, clock, Audit(stores.audit, clock), publish or (lambda event: None))  # type: ignore[arg-type]


async def test_kill_lift_isolate_bump_the_revision_publish_the_whole_set_and_are_audited(stores: Stores) -> None:
    clock, published = FakeClock(), list[ControlsChanged]()
    controls = _controls(stores, clock, published.append)
    switch, revision = await controls.kill(K.SCOPE_KIND_AGENT, "billing", " runaway refunds ", 600, OPERATOR)
    assert revision == 1 and switch.reason == "runaway refunds" and switch.created_by == "operator:sha256:abc"
    assert switch.expires_at == clock.wall() + 600
    isolation, revision = await controls.isolate(parse_version_target("billing@2.4.0"), "bad release", OPERATOR)
    assert revision == 2 and isolation.target == "billing@2.4.0"
    assert [type(e) for e in published] == [ControlsChanged, ControlsChanged]
    assert published[-1].controls.kill_switches == (switch,) and published[-1].controls.isolations == (isolation,)
    lifted, revision = await controls.lift(switch.id, "fixed", OPERATOR)
    assert lifted == switch and revision == 3 and await controls.kills() == []
    await controls.lift_isolation(parse_version_target("billing@2.4.0"), "", OPERATOR)
    entries = await Audit(stores.audit, clock).list()
    assert [(e.action, e.target) for e in entries] == [
        ("kill", "agent billing"),
        ("isolate", "billing@2.4.0"),
        ("kill.lift", "agent billing"),
        ("isolate.lift", "billing@2.4.0"),
    ]
    assert entries[0].reason == "runaway refunds" and switch.id in entries[0].detail
    assert {(e.actor, e.claimed_user) for e in entries} == {("operator:sha256:abc", "ann")}


async def test_a_switch_keeps_its_time_to_effect_while_in_force(stores: Stores) -> None:
    controls = _controls(stores)
    switch, _ = await controls.kill(K.SCOPE_KIND_AGENT, "billing", "runaway refunds", 0, OPERATOR)
    other, _ = await controls.kill(K.SCOPE_KIND_AGENT, "kb", "slow", 0, OPERATOR)
    assert await controls.effects() == {}  # engaged, not measured yet
    effect = KillEffect(switch_id=switch.id, enforced=5, expected=6, took_s=0.0142)
    await controls.record_effect(effect)
    await controls.record_effect(KillEffect(switch_id="ks-gone", enforced=1, expected=1, took_s=0.1))  # not in force
    assert await controls.effects() == {switch.id: effect}
    await controls.lift(switch.id, "fixed", OPERATOR)
    await controls.lift(other.id, "fixed", OPERATOR)
    assert await controls.effects() == {}
    assert (await controls.current()).revision == 4  # keeping an effect is no control change


async def test_a_ttl_ends_by_the_clock_and_is_audited_as_the_registry(stores: Stores) -> None:
    clock = FakeClock()
    controls = _controls(stores, clock)
    switch, _ = await controls.kill(K.SCOPE_KIND_SESSION, "s-1", "loop", 5, OPERATOR)
    assert await controls.expire() == []
    clock.now += 5
    assert await controls.expire() == [switch] and await controls.kills() == []
    last = (await Audit(stores.audit, clock).list())[-1]
    assert (last.action, last.actor) == ("kill.expire", "registry")


@pytest.mark.parametrize(
    ("kind", "value", "reason", "ttl_s", "message"),
    [
        (K.SCOPE_KIND_AGENT, "Billing!", "x", 0, "--agent"),
        (K.SCOPE_KIND_VERSION, "billing", "x", 0, "NAME@VERSION"),
        (K.SCOPE_KIND_ALL, "x", "x", 0, "--all takes no value"),
        (K.SCOPE_KIND_UNSPECIFIED, "", "x", 0, "scope kind"),
        (K.SCOPE_KIND_AGENT, "billing", "  ", 0, "--reason is required"),
        (K.SCOPE_KIND_AGENT, "billing", "x", 0.5, "ttl"),
    ],
)
async def test_bad_kills_are_refused_naming_the_flag(
    stores: Stores, kind: int, value: str, reason: str, ttl_s: float, message: str
) -> None:
    controls = _controls(stores)
    with pytest.raises(InvalidInput, match=message):
        await controls.kill(kind, value, reason, ttl_s, OPERATOR)
    assert (await controls.current()).revision == 0 and await stores.audit.list(0.0, 10) == []


async def test_lifting_what_is_not_in_force_is_not_found(stores: Stores) -> None:
    controls = _controls(stores)
    with pytest.raises(UnknownControl, match="kill list"):
        await controls.lift("ks-0", "", OPERATOR)
    with pytest.raises(UnknownControl, match="not isolated"):
        await controls.lift_isolation(parse_version_target("kb@1.0.0"), "", OPERATOR)


async def test_a_version_6_database_gains_the_controls_tables(tmp_path: Path) -> None:
    await (await open_sqlite(tmp_path, event_log_retention=10)).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript(
        WITHOUT_RECEIPT_TASK_COLUMN + "DROP TABLE kill_switches; DROP TABLE isolations; DROP TABLE audit_log; "
        "DELETE FROM meta WHERE key = 'controls_revision'; PRAGMA user_version = 6;"
    )
    db.close()
    stores = await open_sqlite(tmp_path, event_log_retention=10)
    try:
        controls = _controls(stores)
        current = await controls.current()
        assert current.revision == 0 and current.kill_switches == () and current.isolations == ()
    finally:
        await stores.close()
    assert sqlite3.connect(tmp_path / DB_NAME).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_acknowledgements_count_live_sidecars_and_name_those_that_did_not() -> None:
    clock = FakeClock()
    acks = Acknowledgements(clock)
    acks.watching("a-1", "spiffe://td/agent/a")
    acks.watching("b-1", "spiffe://td/agent/b")
    waiting = asyncio.create_task(acks.wait_for(3, clock.monotonic(), 60))
    await asyncio.sleep(0)
    acks.acknowledge("a-1", 3, "spiffe://td/agent/a")
    await asyncio.sleep(0)
    assert not waiting.done()
    acks.acknowledge("b-1", 4, "spiffe://td/agent/b")  # a newer revision counts too
    done = await asyncio.wait_for(waiting, 5)
    assert (done.enforced, done.expected, done.not_acknowledged) == (2, 2, ())

    with pytest.raises(PermissionDenied):
        acks.acknowledge("a-1", 5, "spiffe://td/agent/b")  # another agent's SVID
    acks.watching("c-1", "spiffe://td/agent/c")
    partial = await acks.wait_for(5, clock.monotonic(), 0)  # the wait ended at once
    assert (partial.enforced, partial.expected, partial.not_acknowledged) == (0, 3, ("a-1", "b-1", "c-1"))

    waiting = asyncio.create_task(acks.wait_for(5, clock.monotonic(), 60))
    await asyncio.sleep(0)
    acks.acknowledge("a-1", 5, "spiffe://td/agent/a")
    acks.stopped("b-1", "spiffe://td/agent/b")  # left: it gets the set first when it reconnects
    acks.stopped("c-1", "spiffe://td/agent/c")
    done = await asyncio.wait_for(waiting, 5)
    assert (done.enforced, done.expected) == (1, 1)
