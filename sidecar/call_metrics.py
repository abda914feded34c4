"""The sidecar's Prometheus metrics: counted by the metrics stage on every call, and read
from the sidecar's state (breakers, active bundle, catalog) when Prometheus scrapes.

prometheus_client, the Prometheus project's own Python client, rather than OpenTelemetry's
Prometheus exporter (still beta, 0.x): it writes the text and OpenMetrics formats itself,
and its custom collectors read state at scrape time, so breaker states and the bundle
revision cost nothing on the call path.

Every metric lives in this sidecar's own MetricsRegistry (never the process-global one); the
state collector reads what the event loop owns, so it is collected on the loop, the rest in a
worker thread (meshwarden.metrics_registry).
Labels are bounded: direction, capability (a capability this sidecar does not know counts
as "_other", so a caller cannot mint label values), gRPC status name, error kind, and the
called instance's id (breakers only; instances come from the catalog), as `peer_instance`:
Prometheus sets `instance` to the scraped target itself and would rename ours on scrape.
No call ids or session ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pybreaker
from prometheus_client import Counter, Gauge, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from meshwarden.metrics_registry import LoopStateCollector, MetricsRegistry
from meshwarden.usage import Usage

OTHER_CAPABILITY = "_other"
# From half a millisecond (a refusal) to the default 30 s deadline.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BREAKER_STATES = (pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN)


@dataclass(frozen=True)
class SidecarState:
    """Readers of what the sidecar holds, called at scrape time."""

    breaker_states: Callable[[], dict[str, str]]
    bundle_revision: Callable[[], int]  # 0 while no bundle is active
    catalog_revision: Callable[[], int]


class _StateCollector(LoopStateCollector):
    def __init__(self, state: SidecarState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        breakers = GaugeMetricFamily(
            "meshwarden_sidecar_breaker_state",
            "Circuit breaker state per instance this sidecar calls: 1 for the current state, 0 for the others",
            labels=["peer_instance", "state"],
        )
        for instance, current in sorted(self._state.breaker_states().items()):
            for state in BREAKER_STATES:
                breakers.add_metric([instance, state], 1.0 if state == current else 0.0)
        yield breakers
        yield GaugeMetricFamily(
            "meshwarden_sidecar_bundle_revision",
            "Revision of the active policy bundle (0: none active, every call is denied)",
            value=self._state.bundle_revision(),
        )
        yield GaugeMetricFamily(
            "meshwarden_sidecar_catalog_revision",
            "Catalog revision this sidecar routes from",
            value=self._state.catalog_revision(),
        )


class SidecarMetrics:
    def __init__(self) -> None:
        self.registry = MetricsRegistry(auto_describe=True)
        r = self.registry
        self.calls = Counter(
            "meshwarden_sidecar_calls",
            "Calls that ended, by direction, capability, gRPC status and meshwarden error kind",
            ["direction", "capability", "status", "error"],
            registry=r,
        )
        self.latency = Histogram(
            "meshwarden_sidecar_call_duration_seconds",
            "Time from the call entering this sidecar's pipeline to its answer",
            ["direction", "capability"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.in_flight = Gauge(
            "meshwarden_sidecar_calls_in_flight", "Calls in this sidecar's pipeline now", ["direction"], registry=r
        )
        self.decisions = Counter(
            "meshwarden_sidecar_policy_decisions",
            "Policy decisions by direction and decision (allow, deny)",
            ["direction", "decision"],
            registry=r,
        )
        self.retries = Counter(
            "meshwarden_sidecar_retries", "Attempts beyond the first, by capability", ["capability"], registry=r
        )
        self.request_bytes = Counter(
            "meshwarden_sidecar_request_bytes",
            "Payload bytes of calls (sent by outbound calls, received by inbound ones)",
            ["direction", "capability"],
            registry=r,
        )
        self.result_bytes = Counter(
            "meshwarden_sidecar_result_bytes",
            "Result bytes of successful calls (received by outbound calls, sent by inbound ones)",
            ["direction", "capability"],
            registry=r,
        )
        self.cost = Counter(
            "meshwarden_sidecar_cost_usd",
            "Cost the callee reported, in US dollars (counted at both ends: filter by direction)",
            ["direction", "capability"],
            registry=r,
        )
        self.tokens = Counter(
            "meshwarden_sidecar_tokens",
            "Model tokens the callee reported, by type (input, output)",
            ["direction", "capability", "type"],
            registry=r,
        )
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

    def watch(self, state: SidecarState) -> None:
        """Reads `state` at every scrape from now on."""
        self.registry.register(_StateCollector(state))

    def record_usage(self, direction: str, capability: str, usage: Usage) -> None:
        if usage.cost_micro_usd:
            self.cost.labels(direction, capability).inc(usage.cost_micro_usd / 1_000_000)
        if usage.input_tokens:
            self.tokens.labels(direction, capability, "input").inc(usage.input_tokens)
        if usage.output_tokens:
            self.tokens.labels(direction, capability, "output").inc(usage.output_tokens)
