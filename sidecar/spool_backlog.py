"""How far the receipt spool is behind the registry, and what the sidecar does when it is too far.

After every shipping round the shipper measures the backlog (receipts, bytes, when the oldest
unshipped call started) in a worker thread; the admin port shows it as metrics, and the
receipts stage reads the verdict. The cap (`--receipt-spool-max-bytes`, `--receipt-spool-max-age-s`)
bounds the disk a sidecar fills while the registry cannot take its receipts. The policy when
the spool is over either limit: new calls are refused (UNAVAILABLE, kind receipt_spool_full,
saying how far behind the spool is) rather than served without a receipt, because a call
without its receipt is one nobody can account for. Calls resume by themselves as soon as
the registry acknowledges enough for the spool to be under both limits again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backlog:
    receipts: int
    bytes: int
    oldest_started_at: float | None  # Unix seconds; None when the spool is empty


@dataclass(frozen=True, kw_only=True, slots=True)
class SpoolCap:
    max_bytes: int
    max_age_s: float


EMPTY = Backlog(0, 0, None)


def over_cap(backlog: Backlog, cap: SpoolCap, now: float) -> str | None:
    """Why the spool is full (a sentence), or None when it is under both limits."""
    age = 0.0 if backlog.oldest_started_at is None else max(0.0, now - backlog.oldest_started_at)
    if backlog.bytes > cap.max_bytes:
        return (
            f"the receipt spool holds {backlog.bytes} bytes ({backlog.receipts} receipts) the registry has not "
            f"acknowledged, over --receipt-spool-max-bytes {cap.max_bytes}"
        )
    if age > cap.max_age_s:
        return (
            f"the oldest of {backlog.receipts} unshipped receipts is {age:.0f} s old, over "
            f"--receipt-spool-max-age-s {cap.max_age_s:g}"
        )
    return None


class _Refusing(Protocol):
    full_reason: str | None


class SpoolWatch:
    """Keeps the last measured backlog, and sets (or clears) the spool's `full_reason`, saying so once."""

    def __init__(self, spool: _Refusing, cap: SpoolCap, now: Callable[[], float]) -> None:
        self._spool, self._cap, self._now = spool, cap, now
        self._last = EMPTY

    def last(self) -> Backlog:
        return self._last

    def update(self, backlog: Backlog) -> None:
        self._last = backlog
        reason = over_cap(backlog, self._cap, self._now())
        if reason is not None and self._spool.full_reason is None:
            log.error("refusing new calls: %s; they resume once the registry takes the receipts", reason)
        elif reason is None and self._spool.full_reason is not None:
            log.warning("the receipt spool is under its limits again (%d receipts); calls are served", backlog.receipts)
        self._spool.full_reason = reason


class BacklogCollector(Collector):
    """The spool's backlog as Prometheus gauges, read at scrape time from the last measurement."""

    def __init__(self, backlog: Callable[[], Backlog], now: Callable[[], float]) -> None:
        self._backlog, self._now = backlog, now

    def collect(self) -> Iterator[Metric]:
        backlog = self._backlog()
        age = 0.0 if backlog.oldest_started_at is None else max(0.0, self._now() - backlog.oldest_started_at)
        yield GaugeMetricFamily(
            "meshwarden_sidecar_receipt_spool_receipts",
            "Receipts in the spool the registry has not acknowledged yet",
            value=backlog.receipts,
        )
        yield GaugeMetricFamily(
            "meshwarden_sidecar_receipt_spool_bytes",
            "Bytes of receipts in the spool the registry has not acknowledged yet",
            value=backlog.bytes,
        )
        yield GaugeMetricFamily(
            "meshwarden_sidecar_receipt_spool_oldest_age_seconds",
            "Age of the oldest receipt not yet acknowledged by the registry (0 when none): alert when it grows",
            value=age,
        )
