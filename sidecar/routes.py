"""Weighted version routes from the registry, and the sessions pinned to a version.

`RouteTable` holds what operators set with `meshwarden route set` (capability -> {version:
weight}), kept current by the watch stream. `SessionPins` remembers, per (session_id,
capability), the version a session's first call resolved to, so that a session stays on one
version while that version is live (a bounded LRU whose entries expire after `ttl_s`).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

import semantic_version

from meshwarden.v1 import registry_pb2

log = logging.getLogger(__name__)

DEFAULT_MAX_SESSIONS = 10_000
DEFAULT_SESSION_TTL_S = 3600.0


class RouteTable:
    def __init__(self) -> None:
        self._weights: dict[str, dict[semantic_version.Version, int]] = {}

    def apply(self, update: registry_pb2.RouteUpdate) -> None:
        table = {} if update.full else dict(self._weights)
        for route in update.routes:
            weights = _parse(route)
            if weights:
                table[route.capability] = weights
            else:
                table.pop(route.capability, None)
        self._weights = table
        log.info("weighted routes: %s", ", ".join(sorted(table)) or "none")

    def set(self, capability: str, weights: dict[str, int]) -> None:
        """For tests and tools: set one route directly."""
        route = registry_pb2.Route(capability=capability, weights=weights)
        self.apply(registry_pb2.RouteUpdate(full=False, routes=[route]))

    def weights(self, capability: str) -> dict[semantic_version.Version, int]:
        return self._weights.get(capability, {})

    def all(self) -> dict[str, dict[str, int]]:
        """Every route, capability -> version -> weight (the admin port's /status)."""
        return {cap: {str(v): w for v, w in sorted(ws.items())} for cap, ws in sorted(self._weights.items())}


def _parse(route: registry_pb2.Route) -> dict[semantic_version.Version, int]:
    weights: dict[semantic_version.Version, int] = {}
    for text, weight in route.weights.items():
        try:
            weights[semantic_version.Version(text)] = weight
        except ValueError:
            log.warning("route for %s names an invalid version %r; ignored", route.capability, text)
    return weights


class SessionPins:
    def __init__(
        self,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        ttl_s: float = DEFAULT_SESSION_TTL_S,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max, self._ttl_s, self._now = max_sessions, ttl_s, now
        self._pins: OrderedDict[tuple[str, str], tuple[semantic_version.Version, float]] = OrderedDict()

    def get(self, session_id: str, capability: str) -> semantic_version.Version | None:
        key = (session_id, capability)
        entry = self._pins.get(key)
        if entry is None:
            return None
        version, expires_at = entry
        if expires_at <= self._now():
            del self._pins[key]
            return None
        self._pins.move_to_end(key)
        return version

    def pin(self, session_id: str, capability: str, version: semantic_version.Version) -> None:
        key = (session_id, capability)
        self._pins[key] = (version, self._now() + self._ttl_s)
        self._pins.move_to_end(key)
        while len(self._pins) > self._max:
            self._pins.popitem(last=False)

    def __len__(self) -> int:
        return len(self._pins)
