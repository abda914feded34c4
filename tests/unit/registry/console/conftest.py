"""A console over real registry parts (SQLite in a temp dir), served in-process by aiohttp
on a loopback port: the same assembly as registry.app, without the gRPC ports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshwarden.addresses import HostPort
from meshwarden.registry.api.controls import ControlsApi
from meshwarden.registry.approvals import Approvals
from meshwarden.registry.audit import Audit
from meshwarden.registry.budgets import Budgets, BudgetSettings
from meshwarden.registry.bundles import Bundles
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.console import ConsoleServer, Sources
from meshwarden.registry.control_acks import Acknowledgements
from meshwarden.registry.controls import Controls
from meshwarden.registry.health_reports import HealthReports
from meshwarden.registry.operators import OperatorCredential
from meshwarden.registry.outcomes import Outcomes
from meshwarden.registry.receipts import Receipts
from meshwarden.registry.session_queries import SessionQueries
from meshwarden.registry.store import Stores
from meshwarden.registry.store.sqlite import stores_over
from meshwarden.registry.store.sqlite.database import Database
from meshwarden.registry.task_queue import TaskQueue
from tests.identity_helpers import FakeClock


@dataclass
class Served:
    url: str
    sources: Sources
    clock: FakeClock
    operator: OperatorCredential
    viewer: OperatorCredential
    stores: Stores
    data_dir: Path
    db: Database  # for tests that write receipts' rows directly

    @property
    def operator_token(self) -> str:
        return (self.data_dir / "operator.token").read_text().strip()

    @property
    def viewer_token(self) -> str:
        return (self.data_dir / "viewer.token").read_text().strip()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serve_console(tmp_path) as console:
        yield console


@contextlib.asynccontextmanager
async def serve_console(tmp_path: Path, tls_files: tuple[Path, Path] | None = None) -> AsyncIterator[Served]:
    db = await asyncio.to_thread(Database.open, tmp_path / "data")
    stores = stores_over(db, event_log_retention=100)
    clock = FakeClock()
    audit = Audit(stores.audit, clock)
    catalog = Catalog(stores.catalog, stores.leases, clock, lease_ttl_s=3600.0, publish=lambda event: None)
    await catalog.load()
    receipts = Receipts(stores.receipts, clock, trust_bundle_pem=b"")
    controls = Controls(stores.controls, clock, audit, lambda event: None)
    task_queue = TaskQueue(stores.tasks, clock)
    sources = Sources(
        catalog=catalog,
        health=HealthReports(clock),
        receipts=receipts,
        sessions=SessionQueries(receipts, Outcomes(stores.outcomes, clock), stores.sessions, clock),
        budgets=Budgets(stores.budgets, clock, audit, BudgetSettings()),
        approvals=Approvals(stores.approvals, clock, audit),
        controls=controls,
        task_queue=task_queue,
        bundles=Bundles(stores.bundles, clock, audit, lambda event: None, trusted_keys=None),
        audit=audit,
        clock=clock,
    )
    operator = OperatorCredential.load_or_create(tmp_path / "data")
    viewer = OperatorCredential.load_or_create_viewer(tmp_path / "data")
    controls_api = ControlsApi(controls, Acknowledgements(clock), audit, clock, task_queue)
    server = ConsoleServer(sources, controls_api, (operator, viewer), idle_s=600, tls_files=tls_files)
    try:
        bound = await server.start(HostPort("127.0.0.1", 0))
        yield Served(
            f"{'https' if tls_files else 'http'}://{bound}",
            sources,
            clock,
            operator,
            viewer,
            stores,
            tmp_path / "data",
            db,
        )
    finally:
        await server.stop()
        await stores.close()
