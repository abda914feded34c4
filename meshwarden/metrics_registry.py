"""A component's Prometheus registry, collected mostly off the event loop.

A scrape of /metrics (meshwarden.admin_http) used to collect everything on the loop: reading
/proc for the process metrics and walking every labelled histogram of a busy sidecar held the
loop for milliseconds, tens of them on a loaded machine. prometheus_client's own metrics
(Counter, Histogram, Gauge) lock what they hold and can be collected from any thread; what a
component reads from its own state (the catalog, the breakers, the watch hub's counters) is
owned by the event loop and may change while another thread iterates it. Those collectors
derive from LoopStateCollector: `MetricsRegistry.on_loop` collects only them, on the loop (a
few values each), and `MetricsRegistry.elsewhere` all the others, in a worker thread.
`collect` still collects everything, for callers on the loop.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class LoopStateCollector(Collector):
    """A collector that reads what the event loop owns: collected on the loop only."""


class MetricsRegistry(CollectorRegistry):
    def __init__(self, auto_describe: bool = False) -> None:
        super().__init__(auto_describe=auto_describe)
        self._on_loop: list[Collector] = []
        self._elsewhere: list[Collector] = []

    def register(self, collector: Collector) -> None:
        super().register(collector)
        (self._on_loop if isinstance(collector, LoopStateCollector) else self._elsewhere).append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        for kept in (self._on_loop, self._elsewhere):
            if collector in kept:
                kept.remove(collector)

    def on_loop(self) -> list[Metric]:
        """The metrics of loop-state collectors; call it on the event loop."""
        return [metric for collector in list(self._on_loop) for metric in collector.collect()]

    def elsewhere(self) -> Iterator[Metric]:
        """The metrics of every other collector; safe in any thread."""
        for collector in list(self._elsewhere):
            yield from collector.collect()
