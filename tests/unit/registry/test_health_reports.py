"""registry.health_reports: the worst live report wins; stale reports and departed reporters drop out."""

from __future__ import annotations

import pytest

from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.health_reports import (
    MAX_REPORTERS_PER_AGENT,
    Finding,
    HealthReports,
    InstanceHealth,
    findings_from_proto,
)
from meshwarden.v1 import catalog_pb2
from tests.unit.sidecar.fakes import FakeClock

HEALTHY, DEGRADED, ISOLATED = (
    catalog_pb2.HEALTH_STATE_HEALTHY,
    catalog_pb2.HEALTH_STATE_DEGRADED,
    catalog_pb2.HEALTH_STATE_ISOLATED,
)


def test_no_reports_is_healthy_and_says_so() -> None:
    reports = HealthReports(FakeClock())
    assert reports.health(["b1"], lambda _: True) == [InstanceHealth("b1", HEALTHY, "no reports", 0, 0.0)]


def test_the_worst_state_of_the_live_reporters_wins_and_all_are_counted() -> None:
    clock = FakeClock()
    reports = HealthReports(clock)
    reports.report("frontdesk", "f1", registered=False, findings={"b1": Finding(HEALTHY, "")})
    clock.now += 1
    reports.report("support", "s1", registered=True, findings={"b1": Finding(ISOLATED, "5 consecutive failures")})
    clock.now += 1
    reports.report("kb", "k1", registered=True, findings={"b1": Finding(DEGRADED, "slow")})
    (health,) = reports.health(["b1"], lambda _: True)
    assert (health.state, health.reason, health.reporters) == (ISOLATED, "5 consecutive failures", 3)
    assert health.updated_at == clock.wall()


def test_reports_expire_after_the_ttl_and_when_a_registered_reporter_left() -> None:
    clock = FakeClock()
    reports = HealthReports(clock, ttl_s=30)
    reports.report("support", "s1", registered=True, findings={"b1": Finding(ISOLATED, "down")})
    reports.report("frontdesk", "f1", registered=False, findings={"b2": Finding(DEGRADED, "slow")})
    left = {"s1"}
    assert [h.state for h in reports.health(["b1", "b2"], lambda i: i not in left)] == [HEALTHY, DEGRADED]
    clock.now += 31
    assert [h.state for h in reports.health(["b1", "b2"], lambda _: True)] == [HEALTHY, HEALTHY]


def test_a_new_report_replaces_the_reporters_previous_one() -> None:
    reports = HealthReports(FakeClock())
    reports.report("support", "s1", registered=True, findings={"b1": Finding(ISOLATED, "down")})
    reports.report("support", "s1", registered=True, findings={"b1": Finding(HEALTHY, "")})
    reports.report("kb", "k1", registered=True, findings={"b1": Finding(HEALTHY, "")})
    (health,) = reports.health(["b1"], lambda _: True)
    assert (health.state, health.reason, health.reporters) == (HEALTHY, "2 of its sidecars saw no problem", 2)


def test_findings_are_validated_and_reasons_bounded() -> None:
    good = catalog_pb2.InstanceHealth(instance_id="b1", state=ISOLATED, reason="x" * 1000)
    assert len(findings_from_proto([good])["b1"].reason) == 300
    with pytest.raises(InvalidInput, match=r"instances\[1\]\.state"):
        findings_from_proto([good, catalog_pb2.InstanceHealth(instance_id="b2")])
    with pytest.raises(InvalidInput, match=r"instances\[0\]\.instance_id"):
        findings_from_proto([catalog_pb2.InstanceHealth(state=HEALTHY)])


def test_stale_reports_are_dropped_when_a_report_arrives_not_only_when_listed() -> None:
    clock = FakeClock()
    reports = HealthReports(clock, ttl_s=30)
    for n in range(20):
        reports.report("a", f"a-{n}", registered=False, findings={"x": Finding(catalog_pb2.HEALTH_STATE_HEALTHY, "")})
    assert len(reports) == 20
    clock.now += 31
    reports.report("b", "b-1", registered=False, findings={})
    assert len(reports) == 1


def test_an_agent_holds_a_bounded_number_of_reports_whatever_ids_it_invents() -> None:
    clock = FakeClock()
    reports = HealthReports(clock)
    for n in range(MAX_REPORTERS_PER_AGENT + 50):
        clock.now += 0.001
        reports.report("mallory", f"mallory-{n}", registered=False, findings={})
    reports.report("billing", "billing-1", registered=True, findings={})
    assert len(reports) == MAX_REPORTERS_PER_AGENT + 1  # mallory's newest, and billing's own
