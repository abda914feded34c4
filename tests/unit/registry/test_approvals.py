"""The approvals aggregate on a real SQLite store: bound to the exact arguments, single use,
expiring (deny by default), decided once, every change audited."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from meshwarden.identity.spiffe_ids import Identity
from meshwarden.registry.approvals import ApprovalAsk, Approvals
from meshwarden.registry.audit import Audit
from meshwarden.registry.authz import Caller
from meshwarden.registry.errors import Conflict, InvalidInput, PermissionDenied, Unauthenticated
from meshwarden.registry.store import Stores
from meshwarden.registry.store.sqlite import DB_NAME, SCHEMA_VERSION, open_sqlite
from tests.unit.registry.conftest import WITHOUT_RECEIPT_TASK_COLUMN
from tests.unit.sidecar.fakes import FakeClock

OPERATOR = Caller(None, 0.0, True, False, "ipv4:127.0.0.1:1", operator_id="operator:sha256:abc", claimed_user="ann")


def ask(arguments: bytes, **changes: object) -> ApprovalAsk:
    base = ApprovalAsk(
        agent="support",
        spiffe_id="spiffe://meshwarden.local/agent/support",
        call_kind="agent",
        capability="billing.refund",
        arguments_sha256=hashlib.sha256(arguments).hexdigest(),
        arguments_json=arguments.decode(),
        risk_factors=("refund of 100 dollars or more",),
        policy_ids=("refund-large",),
        bundle="bundle demo rev 2",
        session_id="s-1",
        workflow_id="",
        call_id="c-1",
        ttl_s=60,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def agent_caller(agent: str) -> Caller:
    spiffe_id = f"spiffe://meshwarden.local/agent/{agent}"
    identity = Identity(spiffe_id=spiffe_id, trust_domain="meshwarden.local", kind="agent", name=agent)
    return Caller(identity, 0.0, False, False, "ipv4:127.0.0.1:2")


async def audit_actions(stores: Stores) -> list[str]:
    return [entry.action for entry in await stores.audit.list(0.0, 1000)]


Setup = tuple[Approvals, FakeClock, Stores]


@pytest.fixture
async def setup(stores: Stores) -> AsyncIterator[Setup]:
    clock = FakeClock()
    yield Approvals(stores.approvals, clock, Audit(stores.audit, clock)), clock, stores


async def test_an_approval_covers_its_exact_arguments_once(setup: Setup) -> None:
    approvals, _clock, store = setup
    first = await approvals.request(ask(b'{"amount_cents":25000}'))
    assert first.approval.state == "pending" and not first.granted
    again = await approvals.request(ask(b'{"amount_cents":25000}', call_id="c-2"))
    assert again.approval.id == first.approval.id  # the same call asked again: no second approval
    decided = await approvals.decide(first.approval.id, True, " verified ", OPERATOR)
    assert decided.state == "approved" and decided.reason == "verified" and decided.decided_by.endswith("(ann)")
    other = await approvals.request(ask(b'{"amount_cents":99999}'))
    assert not other.granted and other.approval.id != first.approval.id  # another refund is not approved
    with pytest.raises(PermissionDenied, match="exact arguments"):
        await approvals.request(ask(b'{"amount_cents":99999}', approval_id=first.approval.id))
    used = await approvals.request(ask(b'{"amount_cents":25000}', call_id="c-3"))
    assert used.granted and used.approval.state == "used" and used.approval.used_by_call_id == "c-3"
    twice = await approvals.request(ask(b'{"amount_cents":25000}', approval_id=first.approval.id))
    assert not twice.granted and twice.approval.state == "used"
    with pytest.raises(Conflict, match="not pending"):
        await approvals.decide(first.approval.id, False, "late", OPERATOR)
    actions = await audit_actions(store)
    assert actions == ["approval.request", "approval.approve", "approval.request", "approval.use"]


async def test_nobody_deciding_in_time_denies(setup: Setup) -> None:
    approvals, clock, store = setup
    pending = (await approvals.request(ask(b"{}", ttl_s=5))).approval
    clock.now += 5
    assert (await approvals.get(pending.id)).state == "expired"
    with pytest.raises(Conflict):
        await approvals.decide(pending.id, True, "too late", OPERATOR)
    approved = (await approvals.request(ask(b'{"a":1}', ttl_s=5))).approval
    await approvals.decide(approved.id, True, "ok", OPERATOR)
    clock.now += 5  # approved but never used: expires too
    late = await approvals.request(ask(b'{"a":1}', approval_id=approved.id))
    assert not late.granted and late.approval.state == "expired"
    assert (await audit_actions(store)).count("approval.expire") == 2


async def test_requests_and_decisions_are_checked_at_the_edge(setup: Setup) -> None:
    approvals, _clock, _store = setup
    with pytest.raises(InvalidInput, match="arguments_sha256"):
        await approvals.request(ask(b"{}", arguments_sha256="abc"))
    with pytest.raises(InvalidInput, match="ttl_s"):
        await approvals.request(ask(b"{}", ttl_s=0))
    with pytest.raises(InvalidInput, match="approval_id"):
        await approvals.request(ask(b"{}", approval_id="nope"))
    pending = (await approvals.request(ask(b"{}"))).approval
    with pytest.raises(InvalidInput, match="reason"):
        await approvals.decide(pending.id, True, "  ", OPERATOR)


async def test_a_version_7_database_gains_the_approvals_table(tmp_path: Path) -> None:
    await (await open_sqlite(tmp_path, event_log_retention=10)).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript(WITHOUT_RECEIPT_TASK_COLUMN + "DROP TABLE approvals; PRAGMA user_version = 7;")
    db.close()
    stores = await open_sqlite(tmp_path, event_log_retention=10)
    try:
        clock = FakeClock()
        approvals = Approvals(stores.approvals, clock, Audit(stores.audit, clock))
        assert await approvals.recent(pending_only=False, limit=10) == []
        assert (await approvals.request(ask(b"{}"))).approval.state == "pending"
    finally:
        await stores.close()
    assert sqlite3.connect(tmp_path / DB_NAME).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_a_sidecar_asks_and_waits_only_for_its_own_agent(setup: Setup) -> None:
    approvals, _clock, _store = setup
    asked = await approvals.request(ask(b"{}", spiffe_id="spiffe://claimed/in/a/field"), agent_caller("support"))
    assert asked.approval.spiffe_id == "spiffe://meshwarden.local/agent/support"  # the certificate's, not the field's
    with pytest.raises(PermissionDenied, match="may not ask for an approval of agent 'support'"):
        await approvals.request(ask(b"{}"), agent_caller("billing"))
    with pytest.raises(Unauthenticated):
        await approvals.request(ask(b"{}"), OPERATOR)
    with pytest.raises(PermissionDenied, match=f"wait for approval {asked.approval.id}"):
        await approvals.wait(asked.approval.id, agent_caller("billing"))
    waiting = asyncio.create_task(approvals.wait(asked.approval.id, agent_caller("support")))
    await approvals.decide(asked.approval.id, False, "no", OPERATOR)
    assert (await waiting).state == "denied"


async def test_an_undecided_wait_ends_expired_at_the_approvals_expiry(setup: Setup) -> None:
    approvals, clock, _store = setup
    asked = (await approvals.request(ask(b"{}", ttl_s=1))).approval
    clock.now += 1  # the wait times out on the loop's clock, then finds it expired on the registry's
    assert (await approvals.wait(asked.id)).state == "expired"


async def test_the_same_call_asking_twice_at_once_gets_one_approval(setup: Setup) -> None:
    approvals, _clock, _store = setup
    answers = await asyncio.gather(*(approvals.request(ask(b'{"x":1}', call_id=f"c-{n}")) for n in range(5)))
    assert len({a.approval.id for a in answers}) == 1
    assert len(await approvals.recent(pending_only=True, limit=10)) == 1
