"""The interface a discovery offers the sidecar, and the registry's own, which needs nothing
beyond what the sidecar always runs (the lease and the registry watch)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from meshwarden.sidecar.catalog import Catalog

Loop = Callable[[], Awaitable[None]]


class Discovery(Protocol):
    @property
    def registry_view(self) -> Catalog:
        """Where the registry watch stream's catalog events go. With the registry as discovery
        this is the routing catalog itself; with Consul, a catalog routing never reads."""
        ...

    def loops(self) -> Mapping[str, Loop]:
        """Background loops to run (and supervise) while the sidecar serves, by name."""
        ...

    async def withdraw(self) -> None:
        """Clean shutdown: take this instance out of discovery at once."""
        ...

    async def close(self) -> None: ...


class RegistryDiscovery:
    """Routing follows the registry watch; the lease announces this instance."""

    def __init__(self, routing_catalog: Catalog) -> None:
        self._catalog = routing_catalog

    @property
    def registry_view(self) -> Catalog:
        return self._catalog

    def loops(self) -> Mapping[str, Loop]:
        return {}

    async def withdraw(self) -> None:
        return None  # the lease deregisters from the registry

    async def close(self) -> None:
        return None
