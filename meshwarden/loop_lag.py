"""How late the event loop runs what is due: a probe sleeps `interval_s` and measures how much
longer it took to be woken. Work that holds the loop (or the GIL) shows up here first, as
`meshwarden_event_loop_lag_seconds` (a histogram) and `meshwarden_event_loop_lag_max_seconds`
(the worst since the last scrape), on the admin port of the sidecar and of the registry."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Final

from prometheus_client import CollectorRegistry, Gauge, Histogram

INTERVAL_S: Final = 0.05
BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LoopLag:
    def __init__(self, registry: CollectorRegistry, interval_s: float = INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._worst_s = 0.0
        self._worst_lock = threading.Lock()  # recorded on the loop, taken when a scrape collects
        self.histogram = Histogram(
            "meshwarden_event_loop_lag_seconds",
            "How late the event loop woke a task that was due (sampled every 50 ms)",
            buckets=BUCKETS_S,
            registry=registry,
        )
        gauge = Gauge(
            "meshwarden_event_loop_lag_max_seconds",
            "The longest event loop lag seen since the previous scrape",
            registry=registry,
        )
        gauge.set_function(self._take_worst)

    def record(self, lag_s: float) -> None:
        self.histogram.observe(lag_s)
        with self._worst_lock:
            self._worst_s = max(self._worst_s, lag_s)

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self._interval_s)
            self.record(max(0.0, time.perf_counter() - started - self._interval_s))

    def _take_worst(self) -> float:
        with self._worst_lock:
            worst, self._worst_s = self._worst_s, 0.0
        return worst
