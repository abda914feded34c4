"""Tell the registry how this sidecar's own instance is doing, so operators see it in
`meshwarden agents list` (HEALTH, WHY), and keep this sidecar's view of the instances it calls.

Once a second the reporter assesses (sidecar.instance_health) every instance of the catalog
that this sidecar has called (routing and the local API's ListCapabilities use that view, and
each change of state is logged), forgets the boards' entries for instances that left the
catalog, and assesses its own instance from the deliveries to its agent (sidecar.own_health).
It reports only its own instance, since the registry accepts a report about an instance only
from the certificate that owns it: when its state changed or `REPORT_EVERY_S` passed (the
registry drops reports older than three of these), and only while the instance is in the
catalog. A registry outage costs a warning; the next round retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from meshwarden.clock import Clock
from meshwarden.sidecar.catalog import Catalog
from meshwarden.sidecar.instance_health import HEALTHY, STATE_NAMES, Assessment, HealthRules, assess
from meshwarden.sidecar.latency import LatencyBoard
from meshwarden.sidecar.own_health import OwnHealth
from meshwarden.sidecar.stages.breaker import BreakerBoard
from meshwarden.v1 import registry_pb2, registry_pb2_grpc

log = logging.getLogger(__name__)

ASSESS_EVERY_S = 1.0
REPORT_EVERY_S = 10.0
_RPC_TIMEOUT_S = 5.0


class HealthReporter:
    def __init__(
        self,
        registry: Callable[[], registry_pb2_grpc.RegistryStub],
        reporter_instance_id: str,
        catalog: Catalog,
        breakers: BreakerBoard,
        latency: LatencyBoard,
        clock: Clock,
        own: OwnHealth,
        rules: HealthRules | None = None,
    ) -> None:
        self._registry, self._reporter, self._own = registry, reporter_instance_id, own
        self._catalog, self._breakers, self._latency, self._clock = catalog, breakers, latency, clock
        self._rules = rules or HealthRules()
        self._states: dict[str, int] = {}

    def current(self) -> list[Assessment]:
        """This sidecar's view of every instance in the catalog that it has called."""
        live = {i.instance_id for i in self._catalog.instances()}
        return [a for a in assess(self._breakers, self._latency, self._rules) if a.instance_id in live]

    def forget_departed(self) -> None:
        """Drops what the boards hold on instances that left the catalog (bounded memory)."""
        if not self._catalog.synced:
            return
        live = {i.instance_id for i in self._catalog.instances()}
        self._latency.retain(live)
        for view in self._breakers.snapshot():
            if view.instance_id not in live:
                self._breakers.forget(view.instance_id)

    async def run(self) -> None:
        sent_states: dict[str, int] | None = None
        sent_at = float("-inf")
        while True:
            await asyncio.sleep(ASSESS_EVERY_S)
            self.forget_departed()
            self._log_changes(self.current())
            now = self._clock.monotonic()
            if not self._serving():
                continue
            views = [self._own.assess(now)]
            states = {a.instance_id: int(a.state) for a in views}
            if states == sent_states and now - sent_at < REPORT_EVERY_S:
                continue
            if await self._send(views):
                sent_states, sent_at = states, now

    def _serving(self) -> bool:
        return any(i.instance_id == self._reporter for i in self._catalog.instances())

    def _log_changes(self, views: list[Assessment]) -> None:
        previous, self._states = self._states, {a.instance_id: int(a.state) for a in views}
        for a in views:
            if previous.get(a.instance_id, HEALTHY) == a.state:
                continue
            if a.state == HEALTHY:
                log.info("instance %s is HEALTHY again", a.instance_id)
            else:
                log.warning("instance %s is %s: %s", a.instance_id, STATE_NAMES[a.state], a.reason)

    async def _send(self, views: list[Assessment]) -> bool:
        report = registry_pb2.HealthReport(reporter_instance_id=self._reporter, instances=[a.to_proto() for a in views])
        try:
            await self._registry().ReportHealth(report, timeout=_RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            log.warning("could not report instance health to the registry: %s", err.details())
            return False
        return True
