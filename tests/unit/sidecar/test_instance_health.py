"""sidecar.instance_health: HEALTHY, DEGRADED (slow, or failing below the threshold), ISOLATED."""

from __future__ import annotations

from meshwarden.errors import PeerUnavailable
from meshwarden.sidecar.instance_health import DEGRADED, HEALTHY, ISOLATED, Assessment, HealthRules, assess
from meshwarden.sidecar.latency import LatencyBoard
from meshwarden.sidecar.stages.breaker import BreakerBoard
from meshwarden.v1 import catalog_pb2
from tests.unit.sidecar.fakes import FakeClock


def boards(clock: FakeClock) -> tuple[BreakerBoard, LatencyBoard]:
    breakers = BreakerBoard(failures=5, reset_s=60, failure_rate=0.5, window_s=10.0, min_calls=10, now=clock.monotonic)
    return breakers, LatencyBoard(clock.monotonic)


def observe(latency: LatencyBoard, capability: str, instance_id: str, seconds: float, now: float) -> None:
    for _ in range(2):  # the first answer is not measured
        latency.observe(capability, instance_id, seconds, now)


def by_id(assessments: list[Assessment]) -> dict[str, Assessment]:
    return {a.instance_id: a for a in assessments}


def test_markedly_slower_than_its_peers_is_degraded_with_the_figures() -> None:
    clock = FakeClock()
    breakers, latency = boards(clock)
    for instance_id, seconds in (("fast-1", 0.012), ("fast-2", 0.011), ("fast-3", 0.014), ("slow", 0.240)):
        observe(latency, "echo", instance_id, seconds, clock.now)
    found = by_id(assess(breakers, latency))
    assert found["slow"] == Assessment("slow", DEGRADED, "echo: latency EWMA 240 ms vs peers' median 12 ms")
    assert {found[i].state for i in ("fast-1", "fast-2", "fast-3")} == {HEALTHY}


def test_slow_but_under_the_floor_or_without_peers_is_healthy() -> None:
    clock = FakeClock()
    breakers, latency = boards(clock)
    observe(latency, "echo", "a", 0.001, clock.now)
    observe(latency, "echo", "b", 0.020, clock.now)  # 20 times slower, but only 20 ms
    observe(latency, "kb.search", "alone", 2.0, clock.now)  # no peer to compare with
    assert {a.state for a in assess(breakers, latency)} == {HEALTHY}


def test_stale_measurements_do_not_count() -> None:
    clock = FakeClock()
    breakers, latency = boards(clock)
    observe(latency, "echo", "slow", 0.5, clock.now)
    clock.now += 120
    observe(latency, "echo", "fast", 0.01, clock.now)
    assert by_id(assess(breakers, latency, HealthRules(stale_after_s=60)))["slow"].state == HEALTHY


def test_an_open_breaker_isolates_and_says_why() -> None:
    clock = FakeClock()
    breakers, latency = boards(clock)
    breakers.breaker("b1")
    for _ in range(5):
        try:
            with breakers.breaker("b1").calling():
                raise PeerUnavailable("down")
        except PeerUnavailable:
            pass
    found = by_id(assess(breakers, latency))
    assert found["b1"].state == ISOLATED and found["b1"].reason == "5 consecutive failures"
    assert found["b1"].to_proto() == catalog_pb2.InstanceHealth(
        instance_id="b1", state=catalog_pb2.HEALTH_STATE_ISOLATED, reason="5 consecutive failures"
    )


def test_a_failure_rate_below_the_opening_one_but_at_half_of_it_is_degraded() -> None:
    clock = FakeClock()
    breakers, latency = boards(clock)
    breakers.breaker("b1")
    for n in range(20):  # 30 % failures: below 50 %, above 25 %
        clock.now += 0.1
        breakers.record("b1", failed=n % 10 < 3)
    found = by_id(assess(breakers, latency))
    assert breakers.state("b1") == "closed"
    assert found["b1"] == Assessment("b1", DEGRADED, "30% failures over 10 s (6 of 20 calls)")


def test_the_worst_finding_wins() -> None:
    clock = FakeClock()
    breakers, latency = boards(clock)
    observe(latency, "echo", "b1", 0.5, clock.now)
    observe(latency, "echo", "b2", 0.01, clock.now)
    breakers.breaker("b1").open()
    found = by_id(assess(breakers, latency))
    assert found["b1"].state == ISOLATED and "latency" not in found["b1"].reason
