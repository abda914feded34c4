"""HEALTHY, DEGRADED or ISOLATED: how this sidecar sees each instance it calls, and why.

- ISOLATED: the instance's circuit breaker is open or half-open (routing sends it no calls
  while another instance qualifies). The reason is the breaker's: "5 consecutive failures",
  "42% failures over 10 s (21 of 50 calls)".
- DEGRADED, for either of two reasons:
  - slow: for some capability, its latency EWMA is at least `latency_ratio` (3) times the
    median EWMA of the other instances this sidecar measured for that capability, and at
    least `latency_floor_s` (50 ms), so that 1 ms against 0.2 ms is no alarm. Measurements
    older than `stale_after_s` do not count. Reason: "echo: latency EWMA 240 ms vs peers'
    median 12 ms".
  - failing: at least `min_calls` calls in the breaker's window, and a failure rate of at
    least half the rate that would open the breaker. Reason: "30% failures over 10 s (6 of
    20 calls)".
- HEALTHY otherwise.

Computed from the boards' plain-data snapshots once a second by the health reporter, never
on the call path.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

import pybreaker

from meshwarden.sidecar.latency import LatencyBoard, LatencyView
from meshwarden.sidecar.stages.breaker import BreakerBoard
from meshwarden.v1 import catalog_pb2

HEALTHY = catalog_pb2.HEALTH_STATE_HEALTHY
DEGRADED = catalog_pb2.HEALTH_STATE_DEGRADED
ISOLATED = catalog_pb2.HEALTH_STATE_ISOLATED
STATE_NAMES = {HEALTHY: "HEALTHY", DEGRADED: "DEGRADED", ISOLATED: "ISOLATED"}


@dataclass(frozen=True, kw_only=True)
class HealthRules:
    latency_ratio: float = 3.0
    latency_floor_s: float = 0.050
    stale_after_s: float = 60.0
    # DEGRADED at this share of the breaker's opening failure rate
    failure_rate_share: float = 0.5


@dataclass(frozen=True, slots=True)
class Assessment:
    instance_id: str
    state: catalog_pb2.HealthState
    reason: str

    def to_proto(self) -> catalog_pb2.InstanceHealth:
        return catalog_pb2.InstanceHealth(instance_id=self.instance_id, state=self.state, reason=self.reason)


def assess(breakers: BreakerBoard, latency: LatencyBoard, rules: HealthRules | None = None) -> list[Assessment]:
    """Every instance either board knows, worst finding first within each instance."""
    rules = rules or HealthRules()
    findings: dict[str, list[tuple[catalog_pb2.HealthState, str]]] = {}
    for view in breakers.snapshot():
        found = findings.setdefault(view.instance_id, [])
        if view.state != pybreaker.STATE_CLOSED:
            found.append((ISOLATED, view.reason))
        elif view.window_calls >= breakers.min_calls and view.window_calls > 0:
            rate = view.window_failures / view.window_calls
            if rate >= breakers.failure_rate * rules.failure_rate_share:
                found.append(
                    (
                        DEGRADED,
                        f"{rate:.0%} failures over {breakers.window_s:g} s "
                        f"({view.window_failures} of {view.window_calls} calls)",
                    )
                )
    latency_views = latency.snapshot()
    for latency_view in latency_views:
        findings.setdefault(latency_view.instance_id, [])
    for instance_id, reason in _slow(latency_views, rules):
        findings[instance_id].append((DEGRADED, reason))
    results = []
    for instance_id, found in sorted(findings.items()):
        if not found:
            results.append(Assessment(instance_id, HEALTHY, ""))
            continue
        worst = max(state for state, _ in found)
        reasons = "; ".join(reason for state, reason in found if state == worst)
        results.append(Assessment(instance_id, worst, reasons))
    return results


def _slow(views: Iterable[LatencyView], rules: HealthRules) -> list[tuple[str, str]]:
    by_capability: dict[str, list[LatencyView]] = {}
    for view in views:
        if view.last_observed_s_ago <= rules.stale_after_s:
            by_capability.setdefault(view.capability, []).append(view)
    slow = []
    for capability, measured in sorted(by_capability.items()):
        for view in measured:
            peers = [other.smooth_s for other in measured if other.instance_id != view.instance_id]
            if not peers:
                continue
            median = statistics.median(peers)
            if view.smooth_s >= rules.latency_floor_s and view.smooth_s >= rules.latency_ratio * median:
                slow.append(
                    (
                        view.instance_id,
                        f"{capability}: latency EWMA {_ms(view.smooth_s)} vs peers' median {_ms(median)}",
                    )
                )
    return slow


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.010 else f"{seconds * 1000:.1f} ms"
