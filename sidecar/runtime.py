"""Everything the stages share at run time, built once by sidecar/app.py."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from meshwarden.clock import Clock
from sidecar.agent_app import AgentApp
from sidecar.bundle_loader import PolicyHolder
from sidecar.call_metrics import SidecarMetrics
from sidecar.catalog import Catalog
from sidecar.config import SidecarConfig
from sidecar.controls import Controls
from sidecar.latency import LatencyBoard
from sidecar.local_agent import LocalAgent
from sidecar.peer_channels import PeerChannels
from sidecar.receipt_spool import ReceiptSpool
from sidecar.routes import RouteTable, SessionPins
from sidecar.schemas import SchemaCache
from sidecar.stages.breaker import BreakerBoard
from sidecar.tracing_setup import SidecarTracing


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
    routes: RouteTable = field(default_factory=RouteTable)
    sessions: SessionPins = field(default_factory=SessionPins)
    receipts: ReceiptSpool | None = None  # None: receipts turned off (--receipts false)
    latency: LatencyBoard = field(default_factory=lambda: LatencyBoard(time.monotonic))
    tracing: SidecarTracing | None = None  # None: tracing is off (no OTLP endpoint configured)
    metrics: SidecarMetrics = field(default_factory=SidecarMetrics)
    controls: Controls = field(default_factory=lambda: Controls(None, time.time))
