"""The approvals aggregate on a real SQLite store: bound to the exact arguments, single use,
expiring (deny by default), decided once, every change audited."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from meshwarden.registry.approvals import ApprovalAsk, Approvals
from meshwarden.registry.authz import Caller
from meshwarden.registry.errors import Conflict, InvalidInput, PermissionDenied
from meshwarden.registry.store.sqlite import DB_NAME, SCHEMA_VERSION
from meshwarden.registry.store.sqlite.approvals import ApprovalStore
from tests.unit.registry.blocking_store import Store
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


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Approvals, FakeClock, Store]]:
    store = Store.open(tmp_path, event_log_retention=10)
    clock = FakeClock()
    yield Approvals(ApprovalStore(store), clock, store.audit(clock)), clock, store
    store.close()


def test_an_approval_covers_its_exact_arguments_once(setup: tuple[Approvals, FakeClock, Store]) -> None:
    approvals, _clock, store = setup
    first = approvals.request(ask(b'{"amount_cents":25000}'))
    assert first.approval.state == "pending" and not first.granted
    again = approvals.request(ask(b'{"amount_cents":25000}', call_id="c-2"))
    assert again.approval.id == first.approval.id  # the same call asked again: no second approval
    decided = approvals.decide(first.approval.id, True, " verified ", OPERATOR)
    assert decided.state == "approved" and decided.reason == "verified" and decided.decided_by.endswith("(ann)")
    other = approvals.request(ask(b'{"amount_cents":99999}'))
    assert not other.granted and other.approval.id != first.approval.id  # another refund is not approved
    with pytest.raises(PermissionDenied, match="exact arguments"):
        approvals.request(ask(b'{"amount_cents":99999}', approval_id=first.approval.id))
    used = approvals.request(ask(b'{"amount_cents":25000}', call_id="c-3"))
    assert used.granted and used.approval.state == "used" and used.approval.used_by_call_id == "c-3"
    twice = approvals.request(ask(b'{"amount_cents":25000}', approval_id=first.approval.id))
    assert not twice.granted and twice.approval.state == "used"
    with pytest.raises(Conflict, match="not pending"):
        approvals.decide(first.approval.id, False, "late", OPERATOR)
    actions = store.audit_actions()
    assert actions == ["approval.request", "approval.approve", "approval.request", "approval.use"]


def test_nobody_deciding_in_time_denies(setup: tuple[Approvals, FakeClock, Store]) -> None:
    approvals, clock, store = setup
    pending = approvals.request(ask(b"{}", ttl_s=5)).approval
    clock.now += 5
    assert approvals.get(pending.id).state == "expired"
    with pytest.raises(Conflict):
        approvals.decide(pending.id, True, "too late", OPERATOR)
    approved = approvals.request(ask(b'{"a":1}', ttl_s=5)).approval
    approvals.decide(approved.id, True, "ok", OPERATOR)
    clock.now += 5  # approved but never used: expires too
    late = approvals.request(ask(b'{"a":1}', approval_id=approved.id))
    assert not late.granted and late.approval.state == "expired"
    assert store.audit_actions().count("approval.expire") == 2


def test_requests_and_decisions_are_checked_at_the_edge(setup: tuple[Approvals, FakeClock, Store]) -> None:
    approvals, _clock, _store = setup
    with pytest.raises(InvalidInput, match="arguments_sha256"):
        approvals.request(ask(b"{}", arguments_sha256="abc"))
    with pytest.raises(InvalidInput, match="ttl_s"):
        approvals.request(ask(b"{}", ttl_s=0))
    with pytest.raises(InvalidInput, match="approval_id"):
        approvals.request(ask(b"{}", approval_id="nope"))
    pending = approvals.request(ask(b"{}")).approval
    with pytest.raises(InvalidInput, match="reason"):
        approvals.decide(pending.id, True, "  ", OPERATOR)


def test_a_version_7_database_gains_the_approvals_table(tmp_path: Path) -> None:
    Store.open(tmp_path, event_log_retention=10).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript("DROP TABLE approvals; PRAGMA user_version = 7;")
    db.close()
    store = Store.open(tmp_path, event_log_retention=10)
    try:
        clock = FakeClock()
        approvals = Approvals(ApprovalStore(store), clock, store.audit(clock))
        assert approvals.recent(pending_only=False, limit=10) == []
        assert approvals.request(ask(b"{}")).approval.state == "pending"
    finally:
        store.close()
    assert sqlite3.connect(tmp_path / DB_NAME).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
