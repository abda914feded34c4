"""The meshwarden registry: the catalog of agent instances, with TTL leases and a watch stream,
and the embedded SPIFFE issuer that gives every sidecar its identity.

Sidecars enrol (a join token, or open enrolment on loopback) for an SVID, register their
agent's instance over mTLS, renew its lease every heartbeat interval and watch the catalog for
changes; operators list it (`meshwarden agents list`) and make join tokens. Run it with
`meshwarden registry serve`, or in-process with `registry.app.serve` (tests, the demo).
"""

from registry.app import Ready, StartError, run, serve
from registry.audit import Audit, AuditEntry
from registry.bundles import Bundles, StoredBundle
from registry.catalog import Catalog, Listing, Registration
from registry.config import RegistryConfig, load
from registry.control_acks import Acknowledgements, Enforcement
from registry.controls import Controls, ControlsChanged, Isolation, KillSwitch
from registry.controls_server import ControlsService
from registry.errors import (
    CaError,
    InvalidInput,
    PermissionDenied,
    RegistryError,
    StoreError,
    Unauthenticated,
    UnknownControl,
    UnknownInstance,
)
from registry.health_reports import HealthReports
from registry.identity_server import IdentityService
from registry.issuer import Issued, Issuer
from registry.join_tokens import CreatedToken, JoinTokenRefused, JoinTokens
from registry.model import (
    Capability,
    CatalogEvent,
    Instance,
    InstanceSpec,
    Removed,
    Snapshot,
    Upserted,
)
from registry.operators import OperatorCredential
from registry.outcomes import Outcomes, StoredOutcome
from registry.receipt_store import ChainHead, ReceiptStore
from registry.receipts_server import ReceiptsService
from registry.routes import Routes, StoredRoute
from registry.server import SERVICE_NAME, RegistryService
from registry.session_queries import SessionQueries
from registry.store import Store
from registry.watch_hub import WatchHub

__all__ = [
    "SERVICE_NAME",
    "Acknowledgements",
    "Audit",
    "AuditEntry",
    "Controls",
    "ControlsChanged",
    "ControlsService",
    "Enforcement",
    "Isolation",
    "KillSwitch",
    "UnknownControl",
    "Bundles",
    "StoredBundle",
    "Routes",
    "StoredRoute",
    "CaError",
    "Capability",
    "Catalog",
    "CatalogEvent",
    "CreatedToken",
    "HealthReports",
    "IdentityService",
    "Instance",
    "InstanceSpec",
    "InvalidInput",
    "Issued",
    "Issuer",
    "JoinTokenRefused",
    "JoinTokens",
    "Listing",
    "OperatorCredential",
    "Outcomes",
    "StoredOutcome",
    "SessionQueries",
    "ChainHead",
    "ReceiptStore",
    "ReceiptsService",
    "PermissionDenied",
    "Ready",
    "Registration",
    "RegistryConfig",
    "RegistryError",
    "RegistryService",
    "Removed",
    "Snapshot",
    "StartError",
    "Store",
    "StoreError",
    "Unauthenticated",
    "UnknownInstance",
    "Upserted",
    "WatchHub",
    "load",
    "run",
    "serve",
]
