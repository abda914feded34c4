"""Weighted version routes: capability -> {version: weight}, set by operators
(`meshwarden route set`), stored with their audit entry, and pushed to every sidecar on the
watch stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import semantic_version

from meshwarden import tasks
from meshwarden.clock import Clock
from meshwarden.registry.audit import Audit, logged
from meshwarden.registry.authz import Caller
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.store import RouteStore
from meshwarden.registry.store.records import AuditEntry, StoredRoute

log = logging.getLogger(__name__)

MAX_VERSIONS_PER_ROUTE = 64
MAX_WEIGHT = 1_000_000

__all__ = ["MAX_VERSIONS_PER_ROUTE", "MAX_WEIGHT", "RouteChanged", "Routes", "StoredRoute"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RouteChanged:
    """A hub event: one capability's route was set or cleared (catalog revisions unaffected)."""

    route: StoredRoute


class Routes:
    def __init__(
        self,
        store: RouteStore,
        clock: Clock,
        audit: Audit,
        publish: Callable[[RouteChanged], None] = lambda _: None,
    ) -> None:
        self._store, self._clock, self._audit, self._publish = store, clock, audit, publish
        self._setting = asyncio.Lock()  # watchers receive route changes in the order they were stored
        self._known: dict[str, StoredRoute] = {}  # as last published here, for catch_up

    async def load(self) -> None:
        self._known = {r.capability: r for r in await self._store.list()}

    async def catch_up(self) -> None:
        """Publishes the routes other replicas set or cleared since this one last looked."""
        async with self._setting:
            stored = {r.capability: r for r in await self._store.list()}
            for capability in sorted(set(stored) | set(self._known)):
                route = stored.get(capability, StoredRoute(capability=capability))
                known = self._known.get(capability, StoredRoute(capability=capability))
                if (dict(route.weights), route.updated_at) != (dict(known.weights), known.updated_at):
                    self._publish(RouteChanged(route=route))
            self._known = stored

    async def set(self, capability: str, weights: Mapping[str, int], caller: Caller | None = None) -> StoredRoute:
        """Stores the route (no weights: clears it), publishes it, and returns it as it now stands."""
        if not capability:
            raise InvalidInput("capability", "is required")
        if len(weights) > MAX_VERSIONS_PER_ROUTE:
            raise InvalidInput("weights", f"lists {len(weights)} versions, over the limit of {MAX_VERSIONS_PER_ROUTE}")
        normalized: dict[str, int] = {}
        for text, weight in weights.items():
            try:
                version = str(semantic_version.Version(text))
            except ValueError as exc:
                raise InvalidInput("weights", f"names {text!r}, not a semantic version such as 2.3.1") from exc
            if not 0 <= weight <= MAX_WEIGHT:
                raise InvalidInput("weights", f"gives {text} weight {weight}; weights are 0 to {MAX_WEIGHT}")
            normalized[version] = weight
        if normalized and not any(normalized.values()):
            raise InvalidInput("weights", "are all 0; give at least one version a weight, or clear the route")
        route = StoredRoute(capability=capability, weights=normalized, updated_at=self._clock.wall())
        entry = self._audit.entry(caller, "route.set", f"route {capability}", "", _describe(normalized) or "cleared")
        await tasks.to_completion(self._store_and_publish(route, entry))
        if normalized:
            log.info("route for %s set: %s", capability, _describe(normalized))
        else:
            log.info("route for %s cleared", capability)
        return route

    async def _store_and_publish(self, route: StoredRoute, entry: AuditEntry) -> None:
        async with self._setting:
            await self._store.put(route, entry)
            logged(entry)
            if route.weights:
                self._known[route.capability] = route
            else:
                self._known.pop(route.capability, None)
            self._publish(RouteChanged(route=route))

    async def list(self) -> list[StoredRoute]:
        return await self._store.list()


def _describe(weights: Mapping[str, int]) -> str:
    return ",".join(f"{v}={w}" for v, w in sorted(weights.items()))
