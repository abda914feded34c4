"""sidecar.own_health: a sidecar judges its own instance by the outages among the deliveries
to its agent, with the breaker's rule (ISOLATED at the opening rate, DEGRADED at half)."""

from __future__ import annotations

from meshwarden.sidecar.instance_health import DEGRADED, HEALTHY, ISOLATED
from meshwarden.sidecar.own_health import OwnHealth


def _after(outcomes: str) -> OwnHealth:
    own = OwnHealth("billing-1", window_s=60, min_calls=10, failure_rate=0.4)
    for n, outcome in enumerate(outcomes):
        own.record(float(n), outcome == "x")
    return own


def test_too_few_deliveries_say_nothing() -> None:
    assert _after("xxxxx").assess(5.0).state == HEALTHY


def test_the_opening_rate_isolates_and_half_of_it_degrades() -> None:
    isolated = _after("x." * 5 + ".").assess(11.0)
    assert (isolated.instance_id, isolated.state) == ("billing-1", ISOLATED)
    assert isolated.reason == "45% of deliveries to its agent failed over 60 s (5 of 11 calls)"
    assert _after("xx" + "." * 8).assess(10.0).state == DEGRADED  # 20% >= 40% / 2
    assert _after("x" + "." * 9).assess(10.0).state == HEALTHY


def test_old_deliveries_leave_the_window() -> None:
    assert _after("x." * 10).assess(200.0).state == HEALTHY
