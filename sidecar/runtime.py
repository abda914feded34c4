"""Everything the stages share at run time, built once by sidecar/app.py."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meshwarden.clock import Clock, SystemClock
from meshwarden.sidecar.agent_app import AgentApp
from meshwarden.sidecar.approval_desk import ApprovalDesk
from meshwarden.sidecar.budget_ledger import BudgetLedger
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call_metrics import SidecarMetrics
from meshwarden.sidecar.catalog import Catalog
from meshwarden.sidecar.config import SidecarConfig
from meshwarden.sidecar.controls import Controls
from meshwarden.sidecar.hops.mcp_credentials import CredentialSource
from meshwarden.sidecar.hops.mcp_upstreams import McpUpstreams
from meshwarden.sidecar.hops.upstream import Upstream
from meshwarden.sidecar.latency import LatencyBoard
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.sidecar.own_health import OwnHealth
from meshwarden.sidecar.peer_channels import PeerChannels
from meshwarden.sidecar.provider_credentials import ProviderCredentials
from meshwarden.sidecar.receipt_spool import ReceiptSpool
from meshwarden.sidecar.routes import RouteTable, SessionPins
from meshwarden.sidecar.schemas import SchemaCache
from meshwarden.sidecar.session_principals import SessionLabels, SessionPrincipals
from meshwarden.sidecar.stages.breaker import BreakerBoard
from meshwarden.sidecar.stages.task_fence import Fences

if TYPE_CHECKING:  # the OpenTelemetry SDK is imported only when tracing is on (runtime_setup)
    from meshwarden.sidecar.tracing_setup import SidecarTracing


@dataclass(frozen=True, kw_only=True)
class Runtime:
    config: SidecarConfig
    clock: Clock
    rng: random.Random
    catalog: Catalog
    schemas: SchemaCache
    local: LocalAgent
    peer_channels: PeerChannels
    agent_app: AgentApp
    policy: PolicyHolder
    breakers: BreakerBoard
    # Deliveries to this sidecar's own agent: what it reports to the registry about its instance.
    own_health: OwnHealth = field(default_factory=lambda: OwnHealth("", 10.0, 20, 0.5))
    routes: RouteTable = field(default_factory=RouteTable)
    sessions: SessionPins = field(default_factory=SessionPins)
    principals: SessionPrincipals = field(default_factory=SessionPrincipals)  # who each session is for
    session_labels: SessionLabels = field(default_factory=SessionLabels)  # what each session works on
    receipts: ReceiptSpool | None = None  # None: receipts turned off (--receipts false)
    latency: LatencyBoard = field(default_factory=lambda: LatencyBoard(time.monotonic))
    tracing: SidecarTracing | None = None  # None: tracing is off (no OTLP endpoint configured)
    metrics: SidecarMetrics = field(default_factory=SidecarMetrics)
    controls: Controls = field(default_factory=lambda: Controls(None, time.time))
    fences: Fences = field(default_factory=lambda: Fences(time.time))
    # The model gateway's: provider keys, the HTTP client to providers, a breaker per provider endpoint.
    credentials: ProviderCredentials = field(default_factory=lambda: ProviderCredentials({}, time.monotonic))
    upstream: Upstream = field(default_factory=Upstream)
    provider_breakers: BreakerBoard = field(default_factory=BreakerBoard)
    approvals: ApprovalDesk | None = None  # None: no registry to ask, so calls needing approval are denied
    # Tool calls (MCP): the sidecar's connections to the bundle's MCP servers, and a breaker per server.
    mcp_upstreams: McpUpstreams = field(default_factory=lambda: McpUpstreams(CredentialSource(None)))
    tool_breakers: BreakerBoard = field(default_factory=BreakerBoard)
    budgets: BudgetLedger = field(default_factory=lambda: BudgetLedger(SystemClock()))
