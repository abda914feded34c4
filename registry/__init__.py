"""The meshwarden registry: the catalog of agent instances, with TTL leases and a watch stream.

Sidecars register their agent's instance, renew its lease every heartbeat interval and watch
the catalog for changes; operators list it (`meshwarden agents list`). Run it with
`meshwarden registry serve`, or in-process with `registry.app.serve` (tests, the demo).
"""

from registry.app import StartError, run, serve
from registry.catalog import Catalog, Listing, Registration
from registry.config import RegistryConfig, load
from registry.errors import InvalidInput, RegistryError, StoreError, UnknownInstance
from registry.model import (
    Capability,
    CatalogEvent,
    Instance,
    InstanceSpec,
    Removed,
    Snapshot,
    Upserted,
)
from registry.server import SERVICE_NAME, RegistryService
from registry.store import Store
from registry.watch_hub import WatchHub

__all__ = [
    "SERVICE_NAME",
    "Capability",
    "Catalog",
    "CatalogEvent",
    "Instance",
    "InstanceSpec",
    "InvalidInput",
    "Listing",
    "Registration",
    "RegistryConfig",
    "RegistryError",
    "RegistryService",
    "Removed",
    "Snapshot",
    "StartError",
    "Store",
    "StoreError",
    "UnknownInstance",
    "Upserted",
    "WatchHub",
    "load",
    "run",
    "serve",
]
