"""How this sidecar's own instance is doing, from the calls it delivers to its agent: what it
reports to the registry (`meshwarden agents list`, HEALTH and WHY).

The registry takes a report about an instance only from the certificate that owns it (issue 14:
when every caller's view counted and the worst won, any agent certificate could mark any
instance ISOLATED). So each sidecar speaks for its own instance, on what it sees itself: the
outages among deliveries to its agent (no answer, unreachable, or an answer with an outage's
code, as sidecar.stages.breaker counts them for callers) over the breaker's window, judged by
the breaker's own rule: ISOLATED at the rate that opens a caller's breaker, DEGRADED at half of
it, once the window holds `min_calls`. Latency compared with other instances stays each
caller's view (sidecar.instance_health, the local API's ListCapabilities and its log): no
instance sees its peers.
"""

from __future__ import annotations

from meshwarden.sidecar.failure_window import FailureWindow
from meshwarden.sidecar.instance_health import DEGRADED, HEALTHY, ISOLATED, Assessment, HealthRules


class OwnHealth:
    def __init__(
        self, instance_id: str, window_s: float, min_calls: int, failure_rate: float, rules: HealthRules | None = None
    ) -> None:
        self._instance_id, self._min_calls, self._failure_rate = instance_id, min_calls, failure_rate
        self._rules = rules or HealthRules()
        self._window = FailureWindow(window_s)

    def record(self, now: float, outage: bool) -> None:
        """One delivery to the agent; `outage` when it went unanswered or answered an outage."""
        self._window.record(now, outage)

    def assess(self, now: float) -> Assessment:
        counts = self._window.counts(now)
        if counts.calls < self._min_calls or counts.calls == 0:
            return Assessment(self._instance_id, HEALTHY, "")
        reason = (
            f"{counts.rate:.0%} of deliveries to its agent failed over {self._window.window_s:g} s "
            f"({counts.failures} of {counts.calls} calls)"
        )
        if counts.rate >= self._failure_rate:
            return Assessment(self._instance_id, ISOLATED, reason)
        if counts.rate >= self._failure_rate * self._rules.failure_rate_share:
            return Assessment(self._instance_id, DEGRADED, reason)
        return Assessment(self._instance_id, HEALTHY, "")
