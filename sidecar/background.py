"""The sidecar's background loops, each supervised (meshwarden.tasks): the lease, the registry
watch (catalog, bundles, routes, kill switches), health and bundle-status reports, receipt
shipping, and the discovery's own loops (Consul). The last round of receipt shipping at
shutdown is here too."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from meshwarden.identity.svid import Svid
from meshwarden.sidecar import budget_watch, catalog_watch
from meshwarden.sidecar.bundle_loader import BundleLoader, BundleStatus
from meshwarden.sidecar.controls_ack import Acknowledger
from meshwarden.sidecar.discovery.source import Discovery
from meshwarden.sidecar.health_reporter import HealthReporter
from meshwarden.sidecar.lease import Lease
from meshwarden.sidecar.receipt_shipper import ReceiptShipper, ShippingSettings
from meshwarden.sidecar.receipt_spool import ReceiptSpool, SpoolReader
from meshwarden.sidecar.registry_link import RegistryLink
from meshwarden.sidecar.runtime import Runtime
from meshwarden.sidecar.spool_backlog import Backlog, BacklogCollector, SpoolCap, SpoolWatch
from meshwarden.tasks import Supervisor
from meshwarden.v1 import controls_pb2, registry_pb2, tasks_pb2

log = logging.getLogger(__name__)

BUNDLE_REPORT_INTERVAL_S = 15.0  # under the registry's REPORT_FRESH_S
RECEIPT_FLUSH_S = 3.0  # at shutdown, the last receipts get this long to reach the registry


@dataclass(frozen=True)
class Links:
    """What the loops talk to and update."""

    rt: Runtime
    registry: RegistryLink
    lease: Lease
    health: HealthReporter
    discovery: Discovery
    loader: BundleLoader
    acknowledger: Acknowledger


def start_loops(supervisor: Supervisor, links: Links) -> None:
    rt, registry = links.rt, links.registry
    instance_id = rt.local.instance_id

    def on_controls(update: controls_pb2.ControlsUpdate) -> None:
        rt.controls.apply(update)
        links.acknowledger.acknowledge(update.revision)

    async def report_forever() -> None:  # also a liveness signal for sidecars not in the catalog
        while True:
            await report_bundle_status(registry, instance_id, rt.policy.status)
            await asyncio.sleep(BUNDLE_REPORT_INTERVAL_S)

    async def watch() -> None:
        await catalog_watch.run(
            registry.stub,
            links.discovery.registry_view,
            rt.rng,
            lambda bundle: links.loader.offer(bundle.artifact, bundle.revision),
            lambda: rt.policy.status.active_revision,
            rt.routes,
            on_controls,
            instance_id,
            links.acknowledger.watch_lost,
        )

    supervisor.start("lease", links.lease.run)
    supervisor.start("bundle-status", report_forever)
    supervisor.start("health-reports", links.health.run)
    supervisor.start("catalog-watch", watch)
    supervisor.start("fencing-key", lambda: fetch_fencing_key(registry, rt))
    supervisor.start("budget-watch", lambda: budget_watch.run(registry.budgets, rt.budgets, rt.rng))
    supervisor.start("budget-slices", rt.budgets.sync_forever)
    for name, loop in links.discovery.loops().items():
        supervisor.start(name, loop)


class Shipping:
    """Receipts from the spool to the registry: a supervised loop while the sidecar runs, and
    one last round once every call has ended."""

    def __init__(self, spool: ReceiptSpool, registry: RegistryLink, rt: Runtime, svid: Callable[[], Svid]) -> None:
        self._spool, self._registry, self._rt, self._svid = spool, registry, rt, svid
        config = rt.config
        cap = SpoolCap(max_bytes=config.receipt_spool_max_bytes, max_age_s=config.receipt_spool_max_age_s)
        self._watch = SpoolWatch(spool, cap, rt.clock.wall)
        rt.metrics.registry.register(BacklogCollector(self._watch.last, rt.clock.wall))
        self._settings = ShippingSettings(
            interval_s=config.receipt_ship_interval_s, batch_receipts=config.receipt_batch_size
        )
        self._loop = self._shipper()

    def backlog(self) -> Backlog:
        """The spool's backlog at the last shipping round."""
        return self._watch.last()

    def start(self, supervisor: Supervisor) -> None:
        supervisor.start("receipt-shipping", self._loop.run)

    async def last_round(self) -> None:
        """Every call has ended, so its receipts are in the spool: a last round, on a connection
        of its own (a batch of the cancelled loop may still be finishing in its thread)."""
        last = self._shipper()
        try:
            await last.flush(RECEIPT_FLUSH_S)
        finally:
            last.close()
            self._loop.close()

    def _shipper(self) -> ReceiptShipper:
        reader = SpoolReader(self._spool.path, self._rt.config.receipt_sync)
        return ReceiptShipper(
            reader,
            self._spool.prune,
            self._registry.receipts_stub,
            self._svid,
            self._settings,
            self._rt.rng,
            on_backlog=self._watch.update,
        )

    async def ship_now(self, timeout_s: float) -> None:
        """A round right away (before an outcome report: see sidecar.outcome_reporter)."""
        await self._loop.ship_now(timeout_s)


async def fetch_fencing_key(registry: RegistryLink, rt: Runtime) -> None:
    """The registry's task-fencing key, fetched once (it is kept across registry restarts);
    until then the task_fence stage refuses calls that carry a task token."""
    delay = 0.2
    while rt.fences.key is None:
        try:
            reply = await registry.tasks().GetFencingKey(tasks_pb2.GetFencingKeyRequest(), timeout=5)
            rt.fences.key = Ed25519PublicKey.from_public_bytes(reply.ed25519_public_key)
        except (grpc.aio.AioRpcError, ValueError) as exc:
            log.info("registry fencing key not fetched yet (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def report_bundle_status(registry: RegistryLink, instance_id: str, status: BundleStatus) -> None:
    try:
        await registry.stub().ReportBundleStatus(
            registry_pb2.BundleStatusReport(
                instance_id=instance_id,
                active_revision=status.active_revision,
                active_digest=status.active_digest,
                refused_revision=status.refused_revision,
                refusal=status.refusal,
            ),
            timeout=5.0,
        )
    except grpc.aio.AioRpcError as err:
        # A pure caller with a custom --instance-id is known to the registry once its first
        # receipts arrive; until then its reports are refused as not yet its own: expected.
        quiet = err.code() == grpc.StatusCode.FAILED_PRECONDITION
        log.log(logging.DEBUG if quiet else logging.WARNING, "could not report the bundle status: %s", err.details())
