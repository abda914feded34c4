"""The registry's Prometheus metrics, all read from its state when Prometheus scrapes (the
registry's request paths pay nothing): live instances per agent, watchers, the catalog and
bundle revisions, and what the watch hub published. Served on the admin port (/metrics).
Read from what the catalog and bundles keep in memory as they change, so a scrape touches no
database and never waits. These read what the event loop owns, so they are collected on it;
the process metrics, in a worker thread (meshwarden.metrics_registry)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from meshwarden.metrics_registry import LoopStateCollector, MetricsRegistry
from meshwarden.registry.budgets import Budgets
from meshwarden.registry.bundles import Bundles
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.watch_hub import WatchHub


class _RegistryState(LoopStateCollector):
    def __init__(self, catalog: Catalog, hub: WatchHub, bundles: Bundles) -> None:
        self._catalog, self._hub, self._bundles = catalog, hub, bundles

    def collect(self) -> Iterator[Metric]:
        instances = GaugeMetricFamily(
            "meshwarden_registry_instances", "Agent instances with a live lease, by agent", labels=["agent"]
        )
        for agent, count in sorted(self._catalog.instances_by_agent.items()):
            instances.add_metric([agent], count)
        yield instances
        yield GaugeMetricFamily(
            "meshwarden_registry_catalog_revision", "Current catalog revision", value=self._catalog.revision
        )
        yield GaugeMetricFamily(
            "meshwarden_registry_watchers", "Sidecars following the watch stream now", value=self._hub.watcher_count
        )
        yield GaugeMetricFamily(
            "meshwarden_registry_bundle_revision",
            "Latest policy bundle revision pushed (0: none)",
            value=self._bundles.latest_revision,
        )
        published = self._hub.published
        yield CounterMetricFamily(
            "meshwarden_registry_bundle_pushes",
            "Policy bundle revisions pushed since the registry started",
            value=published["BundlePublished"],
        )
        events = CounterMetricFamily(
            "meshwarden_registry_watch_events",
            "Events published on the watch stream since start, by type",
            labels=["type"],
        )
        for kind, count in sorted(published.items()):
            events.add_metric([kind], count)
        yield events
        yield CounterMetricFamily(
            "meshwarden_registry_watchers_disconnected_slow",
            "Watchers cut off because they fell too far behind (they resume by revision)",
            value=self._hub.disconnected_slow,
        )


class _BudgetState(LoopStateCollector):
    """Soft-limit crossings and slice traffic, counted by registry.budgets as they happen."""

    def __init__(self, budgets: Budgets) -> None:
        self._budgets = budgets

    def collect(self) -> Iterator[Metric]:
        crossings = CounterMetricFamily(
            "meshwarden_budget_soft_limit_crossings",
            "Budgets whose spend crossed their soft limit (once per budget, period and session)",
            labels=["budget", "scope"],
        )
        for (budget_id, scope), count in sorted(self._budgets.soft_crossings.items()):
            crossings.add_metric([budget_id, scope], count)
        yield crossings
        slices = CounterMetricFamily(
            "meshwarden_budget_slice_events",
            "Budget slice decisions since start: granted, recalled, refused (exhausted), released, lapsed",
            labels=["event"],
        )
        for event, count in sorted(self._budgets.slice_events.items()):
            slices.add_metric([event], count)
        yield slices


def registry_metrics(
    catalog: Catalog, hub: WatchHub, bundles: Bundles, budgets: Budgets | None = None
) -> MetricsRegistry:
    """The registry's own MetricsRegistry (never the process-global one)."""
    registry = MetricsRegistry()
    registry.register(_RegistryState(catalog, hub, bundles))
    if budgets is not None:
        registry.register(_BudgetState(budgets))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
