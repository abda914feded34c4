"""The registry's gRPC edge: one thin servicer per domain, authorized by construction.

Each module converts proto to domain calls and back and holds no SQL and no authorization
code: the interceptor (`authorization`) checks every RPC against registry.authz's table and
turns errors into statuses; `service` assembles the proto services from the domain
servicers' handlers (meshwarden.v1.Registry spans the catalog, the watch, bundles, routes
and health reports).
"""

from __future__ import annotations

from typing import Final

import grpc

from meshwarden.registry.api.approvals import ApprovalsApi
from meshwarden.registry.api.authorization import Authorization
from meshwarden.registry.api.budgets import BudgetsApi
from meshwarden.registry.api.bundle_history import BundleHistoryApi
from meshwarden.registry.api.bundles import BundlesApi
from meshwarden.registry.api.catalog import CatalogApi
from meshwarden.registry.api.controls import ControlsApi
from meshwarden.registry.api.health import HealthApi
from meshwarden.registry.api.identity import IdentityApi
from meshwarden.registry.api.receipts import ReceiptsApi
from meshwarden.registry.api.routes import RoutesApi
from meshwarden.registry.api.service import add_service, handlers_of
from meshwarden.registry.api.session_insights import SessionInsightsApi
from meshwarden.registry.api.tasks import TasksApi
from meshwarden.registry.api.tools import ToolsApi
from meshwarden.registry.api.watch import WatchApi
from meshwarden.v1 import (
    approvals_pb2,
    budgets_pb2,
    bundle_history_pb2,
    controls_pb2,
    identity_pb2,
    receipts_pb2,
    registry_pb2,
    session_insights_pb2,
    tasks_pb2,
    tools_pb2,
)

REGISTRY: Final = registry_pb2.DESCRIPTOR.services_by_name["Registry"]
CONTROLS: Final = controls_pb2.DESCRIPTOR.services_by_name["Controls"]
IDENTITY: Final = identity_pb2.DESCRIPTOR.services_by_name["Identity"]
RECEIPTS: Final = receipts_pb2.DESCRIPTOR.services_by_name["Receipts"]
APPROVALS: Final = approvals_pb2.DESCRIPTOR.services_by_name["Approvals"]
BUDGETS: Final = budgets_pb2.DESCRIPTOR.services_by_name["Budgets"]
TOOLS: Final = tools_pb2.DESCRIPTOR.services_by_name["Tools"]
BUNDLE_HISTORY: Final = bundle_history_pb2.DESCRIPTOR.services_by_name["BundleHistory"]
TASKS: Final = tasks_pb2.DESCRIPTOR.services_by_name["Tasks"]
SESSION_INSIGHTS: Final = session_insights_pb2.DESCRIPTOR.services_by_name["SessionInsights"]
SERVICES: Final = (
    REGISTRY,
    CONTROLS,
    IDENTITY,
    RECEIPTS,
    APPROVALS,
    BUDGETS,
    TOOLS,
    BUNDLE_HISTORY,
    TASKS,
    SESSION_INSIGHTS,
)

__all__ = [
    "APPROVALS",
    "BUDGETS",
    "CONTROLS",
    "IDENTITY",
    "RECEIPTS",
    "REGISTRY",
    "SERVICES",
    "SESSION_INSIGHTS",
    "TASKS",
    "TOOLS",
    "ApprovalsApi",
    "Authorization",
    "BudgetsApi",
    "BUNDLE_HISTORY",
    "BundleHistoryApi",
    "BundlesApi",
    "CatalogApi",
    "ControlsApi",
    "HealthApi",
    "IdentityApi",
    "ReceiptsApi",
    "RoutesApi",
    "SessionInsightsApi",
    "TasksApi",
    "ToolsApi",
    "WatchApi",
    "add_services",
]


def add_services(
    server: grpc.aio.Server,
    *,
    catalog: CatalogApi,
    watch: WatchApi,
    bundles: BundlesApi,
    routes: RoutesApi,
    health: HealthApi,
    controls: ControlsApi,
    identity: IdentityApi,
    receipts: ReceiptsApi,
    tasks: TasksApi,
    approvals: ApprovalsApi,
    budgets: BudgetsApi,
    tools: ToolsApi,
    bundle_history: BundleHistoryApi,
    session_insights: SessionInsightsApi,
) -> list[str]:
    """Adds every registry service to `server`; returns their full names (for health and reflection)."""
    add_service(
        server,
        REGISTRY,
        handlers_of(catalog.handlers(), watch.handlers(), bundles.handlers(), routes.handlers(), health.handlers()),
    )
    add_service(server, CONTROLS, controls.handlers())
    add_service(server, IDENTITY, identity.handlers())
    add_service(server, RECEIPTS, receipts.handlers())
    add_service(server, TASKS, tasks.handlers())
    add_service(server, APPROVALS, approvals.handlers())
    add_service(server, BUDGETS, budgets.handlers())
    add_service(server, TOOLS, tools.handlers())
    add_service(server, BUNDLE_HISTORY, bundle_history.handlers())
    add_service(server, SESSION_INSIGHTS, session_insights.handlers())
    return [service.full_name for service in SERVICES]
