"""Who a session was started for, suspect sessions and changes: computed from receipts, kept
per session by each store as receipts are shipped, and answered by the servicer's domain objects."""

from __future__ import annotations

import asyncio
import math
import random
import re

import pytest
from prometheus_client import generate_latest

from meshwarden.metrics_registry import MetricsRegistry
from meshwarden.receipt_hash import receipt_hash
from meshwarden.registry import change_tests, session_changes, session_principal, session_signals
from meshwarden.registry.call_facts import facts_of
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.metrics import _SuspectState
from meshwarden.registry.outcomes import Outcomes
from meshwarden.registry.session_suspects import SessionSuspects
from meshwarden.registry.store import Stores
from meshwarden.registry.store.records import AuditEntry, SessionQuery, SuspectThresholds
from meshwarden.v1 import receipts_pb2, session_insights_pb2
from tests.unit.receipt_fixtures import both_sides, receipt
from tests.unit.registry.test_session_queries import Receipts


class WallClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


def with_principal(found: list[receipts_pb2.Receipt], principal: str, **fields: str) -> list[receipts_pb2.Receipt]:
    for r in found:
        r.on_behalf_of = principal
        for name, value in fields.items():
            setattr(r, name, value)
    return found


def test_the_first_receipt_naming_a_principal_wins_and_others_are_flagged() -> None:
    first = with_principal(both_sides("c1", "frontdesk", "billing", "billing.refund", at=10.0), "user:alice")
    forged = with_principal(both_sides("c2", "billing", "kb", "kb.search", at=11.0), "user:mallory")
    found = session_principal.principal_of("s1", [*forged, *first])
    assert (found.started_for, found.launched_by, found.conflict) == ("user:alice", "frontdesk", "user:mallory")
    refused = receipt("outbound", "c3", "billing", "kb", "kb.search", at=12.0)
    refused.on_behalf_of, refused.on_behalf_of_refused = "user:alice", "user:root"
    assert session_principal.principal_of("s1", [*first, refused]).conflict == "user:root"
    assert session_principal.principal_of("s1", first).conflict == ""


def test_repeats_and_retries_are_counted_per_call_not_per_receipt() -> None:
    calls = []
    for n in range(4):  # the same arguments four times; the first three fail, the last succeeds
        status = "OK" if n == 3 else "UNAVAILABLE"
        calls += both_sides(f"c{n}", "planner", "kb", "kb.search", at=10.0 + n, status=status)
    calls += both_sides("c9", "planner", "kb", "kb.search", at=20.0, attempt=3)  # two retries by the mesh
    for r in calls:
        r.arguments_sha256 = "sha256:same" if r.call_id != "c9" else "sha256:other"
    found = session_signals.signals_of("s1", calls)
    assert (found.max_repeats, found.repeated_capability, found.successes) == (4, "kb.search", 2)
    assert found.retries == 3 + 2
    limits = SuspectThresholds(repeats=4, retries_per_success=2.0)
    reasons = session_signals.reasons(found, cost_micro_usd=0, last_activity_at=20.0, now=30.0, limits=limits)
    assert reasons == ["repeating", "retrying"]
    calm = SuspectThresholds(repeats=5, retries_per_success=3.0)
    assert session_signals.reasons(found, cost_micro_usd=0, last_activity_at=20.0, now=30.0, limits=calm) == []


def test_thresholds_are_checked() -> None:
    with pytest.raises(InvalidInput) as info:
        session_signals.thresholds_of(session_insights_pb2.ListSuspectSessionsRequest(repeats=1))
    assert info.value.field == "repeats"
    with pytest.raises(InvalidInput):
        session_signals.thresholds_of(session_insights_pb2.ListSuspectSessionsRequest(reason="bored"))
    assert session_signals.thresholds_of(session_insights_pb2.ListSuspectSessionsRequest()) == SuspectThresholds()


def test_the_z_test_and_mann_whitney_match_known_values() -> None:
    # 90/100 against 75/100: pooled 0.825, se = sqrt(0.825 * 0.175 * 0.02) = 0.05374, z = 2.791,
    # two-sided p = 2 * (1 - Phi(2.791)) = 0.00525
    assert math.isclose(change_tests.two_proportion_p(90, 100, 75, 100), 0.00525, rel_tol=0.01)
    assert change_tests.two_proportion_p(9, 9, 1, 9) == 1.0  # too few calls: never flagged
    rng = random.Random(7)
    same = [rng.gauss(100, 10) for _ in range(200)]
    other = [rng.gauss(100, 10) for _ in range(200)]
    slower = [x + 15 for x in other]
    assert change_tests.mann_whitney_p(same, other) > 0.05
    assert change_tests.mann_whitney_p(same, slower) < 1e-6
    assert change_tests.mann_whitney_p([5.0] * 20, [5.0] * 20) == 1.0  # all tied: no evidence


def test_a_version_that_fails_more_is_flagged_and_one_that_does_not_is_not() -> None:
    receipts = []
    for n in range(200):
        new = n >= 100
        status = "INTERNAL" if new and n % 5 == 0 else "OK"  # 2.4.0 fails one call in five
        receipts += both_sides(
            f"b{n}",
            "frontdesk",
            "billing",
            "billing.refund",
            at=1000.0 + n,
            status=status,
            version="2.4.0" if new else "2.3.1",
            session=f"s{n}",
        )
        receipts += both_sides(
            f"k{n}", "frontdesk", "kb", "kb.search", at=1000.0 + n, session=f"s{n}", version="1.1.0" if new else "1.0.0"
        )
    found = session_changes.changes(facts_of(receipts), {}, [], kind="version")
    by_subject = {c.subject: c for c in found}
    billing, kb = by_subject["billing"], by_subject["kb"]
    assert (billing.before, billing.after, billing.before_side.calls, billing.after_side.failures) == (
        "2.3.1",
        "2.4.0",
        100,
        20,
    )
    assert "success_rate" in billing.significant and kb.significant == []


def test_a_route_change_compares_the_capabilitys_calls_before_and_after() -> None:
    receipts = [
        r
        for n in range(40)
        for r in both_sides(
            f"c{n}", "a", "billing", "billing.refund", at=100.0 + n, latency_us=1000 if n < 20 else 9000
        )
    ]
    entry = AuditEntry(
        at=120.0,
        actor="op",
        claimed_user="",
        action="route.set",
        target="route billing.refund",
        reason="",
        detail="2.4.0=100",
    )
    (change,) = session_changes.changes(facts_of(receipts), {}, [entry], kind="route")
    assert (change.before_side.calls, change.after_side.calls, change.significant) == (20, 20, ["latency"])
    assert session_changes.parse_cursor(session_changes.cursor_after(change)) == session_changes.position(change)
    with pytest.raises(InvalidInput):
        session_changes.parse_cursor("nope")


async def ship_as_sidecars(stores: Stores, receipts: list[receipts_pb2.Receipt]) -> None:
    """Ships `receipts` through the store as their sidecars would: one chain per sidecar, one
    batch per chain (the session aggregates are kept in each batch's transaction)."""
    chains: dict[str, list[receipts_pb2.Receipt]] = {}
    for r in receipts:
        chains.setdefault(r.sidecar_spiffe_id, []).append(r)
    for spiffe_id, own in chains.items():
        prev, instance = "", spiffe_id.rpartition("/")[2] + "-1"
        for seq, r in enumerate(own, 1):
            r.sidecar_instance_id, r.seq, r.prev_hash = instance, seq, prev
            r.hash = prev = receipt_hash(r)
        await stores.receipts.ship(spiffe_id, instance, own, receipts_pb2.SignedHead(), 1000.0)


@pytest.fixture
async def stored(stores: Stores) -> SessionSuspects:
    """Three running sessions shipped to each store: one busy and spending, one idle, one fine."""
    receipts = [
        *with_principal(
            both_sides(
                "a1", "frontdesk", "billing", "billing.refund", session="busy", at=1000.0, usage=("m", 1, 1, 2_000_000)
            ),
            "user:alice",
        ),
        *both_sides("b1", "frontdesk", "kb", "kb.search", session="quiet", at=10.0),
        *both_sides("c1", "frontdesk", "kb", "kb.search", session="fine", at=1000.0),
        *both_sides("d1", "frontdesk", "kb", "kb.search", session="", at=1005.0),  # outside any session
    ]
    await ship_as_sidecars(stores, receipts)
    clock = WallClock(1010.0)
    return SessionSuspects(Receipts(receipts), Outcomes(stores.outcomes, clock), stores.session_signals, clock)


async def test_the_store_lists_suspects_longest_idle_first_with_a_cursor(
    stored: SessionSuspects,
) -> None:
    suspects = stored
    first = await suspects.list(session_insights_pb2.ListSuspectSessionsRequest(limit=1))
    assert [(s.summary.session_id, list(s.reasons)) for s in first.sessions] == [("quiet", ["idle"])]
    rest = await suspects.list(session_insights_pb2.ListSuspectSessionsRequest(cursor=first.next_cursor))
    assert [(s.summary.session_id, list(s.reasons), s.summary.started_for) for s in rest.sessions] == [
        ("busy", ["spending"], "user:alice")
    ]
    spending = await suspects.list(session_insights_pb2.ListSuspectSessionsRequest(reason="spending"))
    assert [s.summary.session_id for s in spending.sessions] == ["busy"]


async def test_the_receipts_alone_give_the_same_suspects(stored: SessionSuspects) -> None:
    suspects = stored
    from_store = await suspects.list(session_insights_pb2.ListSuspectSessionsRequest())
    suspects._sessions = None  # the PostgreSQL path: every receipt, in a worker thread
    from_receipts = await suspects.list(session_insights_pb2.ListSuspectSessionsRequest())
    assert [(s.summary.session_id, list(s.reasons)) for s in from_store.sessions] == [
        (s.summary.session_id, list(s.reasons)) for s in from_receipts.sessions
    ]


async def test_the_store_filters_by_principal(stored: SessionSuspects) -> None:
    suspects = stored
    found = await suspects._sessions.find(SessionQuery(started_for="user:alice"))  # type: ignore[union-attr]
    assert [(s.aggregate.session_id, s.principal.launched_by if s.principal else "") for s in found] == [
        ("busy", "frontdesk")
    ]
    counts = await suspects._sessions.suspect_counts(SuspectThresholds(), 1010.0)  # type: ignore[union-attr]
    assert counts == {"repeating": 0, "retrying": 0, "spending": 1, "idle": 1}


async def test_the_store_keeps_one_fact_per_call_as_the_receipts_give_them(
    stored: SessionSuspects,
) -> None:
    suspects = stored
    kept = await suspects._sessions.call_facts(0.0, 2000.0)  # type: ignore[union-attr]
    from_receipts = facts_of(suspects._receipts._all)  # type: ignore[attr-defined]
    assert sorted(kept, key=lambda f: f.call_id) == sorted(from_receipts, key=lambda f: f.call_id)
    assert {f.call_id for f in await suspects._sessions.call_facts(500.0, 2000.0)} == {"a1", "c1", "d1"}  # type: ignore[union-attr]


async def test_an_outcome_ends_suspicion_and_loops_are_found_by_the_stores_conditions(
    stored: SessionSuspects, stores: Stores
) -> None:
    """The reasons as each store's SQL states them (not the Python of registry.session_signals):
    the same call failing again and again is repeating and retrying; an outcome clears it."""
    loop = both_sides("l0", "planner", "search", "search.query", session="loop", at=1001.0, status="UNAVAILABLE")
    for n in range(1, 6):
        loop += both_sides(
            f"l{n}", "planner", "search", "search.query", session="loop", at=1001.0 + n, status="UNAVAILABLE"
        )
    for r in loop:
        r.arguments_sha256 = "sha256:same"
    await ship_as_sidecars(stores, loop)
    found = await stored.list(session_insights_pb2.ListSuspectSessionsRequest(reason="repeating"))
    assert [(s.summary.session_id, list(s.reasons), s.max_repeats, s.retries) for s in found.sessions] == [
        ("loop", ["repeating", "retrying"], 6, 5)
    ]
    assert await stores.session_signals.suspect_counts(SuspectThresholds(), 1010.0) == {  # type: ignore[union-attr]
        "repeating": 1,
        "retrying": 1,
        "spending": 1,
        "idle": 1,
    }
    await stored._outcomes.report("quiet", "abandoned", "", reported_by="operator")
    left = await stored.list(session_insights_pb2.ListSuspectSessionsRequest())
    assert [s.summary.session_id for s in left.sessions] == ["busy", "loop"]


async def test_the_stores_change_sides_are_the_sums_of_the_facts(stored: SessionSuspects, stores: Stores) -> None:
    """What each store sums in SQL (counts, distinct succeeded sessions, latencies to three
    significant digits) is what registry.session_changes sums from the facts themselves."""
    calls = []
    for n in range(24):
        calls += both_sides(
            f"v{n}",
            "planner",
            "ledger",
            "ledger.post",
            session=f"v-s{n % 6}",
            at=1100.0 + n,
            latency_us=(123, 4567, 98_765, 1_234_567)[n % 4] + n,
            status="OK" if n % 5 else "INTERNAL",
            version="1.0.0" if n < 12 else "1.1.0",
            usage=("m", 1, 1, 10 + n),
        )
    await ship_as_sidecars(stores, calls)
    await stored._outcomes.report("v-s1", "succeeded", "", reported_by="planner")
    await stored._outcomes.report("v-s2", "failed", "", reported_by="planner")
    everything = [*stored._receipts._all, *calls]  # type: ignore[attr-defined]
    facts = facts_of(everything)
    outcomes = await stored._outcomes.for_sessions({f.session_id for f in facts})
    assert stores.session_signals is not None
    kept = await stores.session_signals.change_sides(0.0, 2000.0)
    made = session_changes.sides_of(facts, outcomes)
    key = lambda side: (side.kind, side.subject, side.value)  # noqa: E731
    assert sorted(kept, key=key) == sorted(made, key=key)
    early = [f for f in facts if 1100.0 <= f.started_at < 1106.0]  # a narrow window: read through the index
    narrow = await stores.session_signals.change_sides(1100.0, 1106.0)
    assert sorted(narrow, key=key) == sorted(session_changes.sides_of(early, outcomes), key=key)
    ledger = {s.value: s for s in kept if s.subject == "ledger"}
    assert (ledger["1.0.0"].calls, ledger["1.0.0"].failures, ledger["1.0.0"].successful_sessions) == (12, 3, 1)
    assert (4560, 1) in ledger["1.0.0"].latencies  # 4568 to three significant digits
    (change,) = session_changes.changes_of(kept, [], outcomes, [], kind="version", subject="ledger")
    assert (change.before, change.after, change.before_side.calls) == ("1.0.0", "1.1.0", 12)
    routed = await stores.session_signals.call_facts(0.0, 2000.0, {"ledger.post"})  # a route change's calls
    assert sorted(f.call_id for f in routed) == [f"v{n}" for n in sorted(range(24), key=str)]


async def test_the_suspects_are_counted_for_a_gauge_per_reason(stored: SessionSuspects) -> None:
    """Question 7's metric: detected while sessions run, exported per reason (default thresholds)."""
    suspects = stored
    gauge = MetricsRegistry()
    gauge.register(_SuspectState(suspects))
    assert "meshwarden_sessions_suspect{" not in (await asyncio.to_thread(generate_latest, gauge)).decode()
    counting = asyncio.create_task(suspects.count_forever(every_s=3600))
    try:
        async with asyncio.timeout(10):
            while not suspects.counted:  # the first count runs at once; then every_s
                await asyncio.sleep(0.01)
    finally:
        counting.cancel()
    text = (await asyncio.to_thread(generate_latest, gauge)).decode()
    samples = dict(re.findall(r'^meshwarden_sessions_suspect\{reason="(\w+)"\} (\S+)$', text, re.M))
    # "quiet" has had no call for 1,000 s; "busy" spent $2 with no outcome, its last call 10 s ago
    assert samples == {"repeating": "0.0", "retrying": "0.0", "spending": "1.0", "idle": "1.0"}
