"""Weighted version routes: capability -> {version: weight}, set by operators
(`meshwarden route set`), stored, and pushed to every sidecar on the watch stream."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import semantic_version

from meshwarden.clock import Clock
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.store import Store

log = logging.getLogger(__name__)

MAX_VERSIONS_PER_ROUTE = 64
MAX_WEIGHT = 1_000_000


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredRoute:
    capability: str
    # Empty: the route was cleared.
    weights: Mapping[str, int] = field(default_factory=dict)
    updated_at: float = 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class RouteChanged:
    """A hub event: one capability's route was set or cleared (catalog revisions unaffected)."""

    route: StoredRoute


class Routes:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store, self._clock = store, clock

    def set(self, capability: str, weights: Mapping[str, int]) -> StoredRoute:
        """Stores the route (no weights: clears it) and returns it as it now stands."""
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
        with self._store.transaction() as db:
            if normalized:
                db.execute(
                    "INSERT OR REPLACE INTO routes (capability, weights, updated_at) VALUES (?, ?, ?)",
                    (capability, json.dumps(normalized, sort_keys=True), route.updated_at),
                )
            else:
                db.execute("DELETE FROM routes WHERE capability = ?", (capability,))
        if normalized:
            log.info("route for %s set: %s", capability, _describe(normalized))
        else:
            log.info("route for %s cleared", capability)
        return route

    def list(self) -> list[StoredRoute]:
        rows = self._store.query("SELECT capability, weights, updated_at FROM routes ORDER BY capability")
        return [StoredRoute(capability=r[0], weights=json.loads(r[1]), updated_at=r[2]) for r in rows]


def _describe(weights: Mapping[str, int]) -> str:
    return ",".join(f"{v}={w}" for v, w in sorted(weights.items()))
