"""The meshwarden registry: the catalog of agent instances, with TTL leases and a watch stream,
and the embedded SPIFFE issuer that gives every sidecar its identity.

Sidecars enrol (a join token, or open enrolment on loopback) for an SVID, register their
agent's instance over mTLS, renew its lease every heartbeat interval and watch the catalog for
changes; operators list it (`meshwarden agents list`) and make join tokens. Run it with
`meshwarden registry serve`, or in-process with `registry.app.serve` (tests, the demo).
"""

from meshwarden.registry.app import Ready, StartError, run, serve
from meshwarden.registry.approvals import ApprovalAsk, Approvals
from meshwarden.registry.audit import Audit, AuditEntry
from meshwarden.registry.budgets import Budgets, BudgetSettings, BudgetState
from meshwarden.registry.bundles import Bundles, StoredBundle
from meshwarden.registry.catalog import Catalog, Listing, Registration
from meshwarden.registry.config import RegistryConfig, load
from meshwarden.registry.control_acks import Acknowledgements, Enforcement
from meshwarden.registry.controls import Controls, ControlsChanged, Isolation, KillSwitch
from meshwarden.registry.errors import (
    CaError,
    InvalidInput,
    PermissionDenied,
    RegistryError,
    StoreError,
    Unauthenticated,
    UnknownControl,
    UnknownInstance,
)
from meshwarden.registry.health_reports import HealthReports
from meshwarden.registry.issuer import Issued, Issuer
from meshwarden.registry.join_tokens import CreatedToken, JoinTokenRefused, JoinTokens
from meshwarden.registry.model import (
    Capability,
    CatalogEvent,
    Instance,
    InstanceSpec,
    Removed,
    Snapshot,
    Upserted,
)
from meshwarden.registry.operators import OperatorCredential
from meshwarden.registry.outcomes import Outcomes, StoredOutcome
from meshwarden.registry.receipts import ChainHead, Receipts
from meshwarden.registry.routes import Routes, StoredRoute
from meshwarden.registry.session_queries import SessionQueries
from meshwarden.registry.store import ApprovalStore, BudgetStore, Stores
from meshwarden.registry.store.records import StoredApproval
from meshwarden.registry.store.sqlite import open_sqlite
from meshwarden.registry.watch_hub import WatchHub

__all__ = [
    "ApprovalAsk",
    "ApprovalStore",
    "Approvals",
    "StoredApproval",
    "Acknowledgements",
    "Audit",
    "AuditEntry",
    "Controls",
    "ControlsChanged",
    "Enforcement",
    "Isolation",
    "KillSwitch",
    "UnknownControl",
    "BudgetSettings",
    "BudgetState",
    "BudgetStore",
    "Budgets",
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
    "Receipts",
    "PermissionDenied",
    "Ready",
    "Registration",
    "RegistryConfig",
    "RegistryError",
    "Removed",
    "Snapshot",
    "StartError",
    "Stores",
    "StoreError",
    "Unauthenticated",
    "UnknownInstance",
    "Upserted",
    "WatchHub",
    "load",
    "open_sqlite",
    "run",
    "serve",
]
