"""Health reports' RPC (Registry service: ReportHealth): how a sidecar's own instance is doing,
kept by registry.health_reports, only from an instance the caller owns
(registry.reporter_ownership), and only about instances in the catalog that the caller's
certificate owns: when every caller's view counted and the worst won, any agent certificate
could mark any instance ISOLATED."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from meshwarden.registry.api.service import Handler
from meshwarden.registry.authz import current_caller
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.health_reports import HealthReports, findings_from_proto
from meshwarden.registry.receipts import Receipts
from meshwarden.v1 import registry_pb2

Context = grpc.aio.ServicerContext[Any, Any]


class HealthApi:
    def __init__(self, health: HealthReports, catalog: Catalog, receipts: Receipts) -> None:
        self._health, self._catalog, self._receipts = health, catalog, receipts

    def handlers(self) -> Mapping[str, Handler]:
        return {"ReportHealth": self.ReportHealth}

    async def ReportHealth(self, request: registry_pb2.HealthReport, _: Context) -> registry_pb2.HealthReportAck:
        if not request.reporter_instance_id:
            raise InvalidInput("reporter_instance_id", "is required: the reporting sidecar's own instance id")
        reporter = await self._catalog.instance(request.reporter_instance_id)
        chain = await self._receipts.head(request.reporter_instance_id) if reporter is None else None
        findings, owners = {}, {}
        for instance_id, finding in findings_from_proto(request.instances).items():
            about = await self._catalog.instance(instance_id)
            if about is None:  # dropped: memory stays bounded by the catalog
                continue
            findings[instance_id], owners[instance_id] = finding, about.agent
        kept = self._health.report_from(
            current_caller(),
            request.reporter_instance_id,
            reporter.agent if reporter is not None else None,
            chain.sidecar_spiffe_id if chain is not None else None,
            findings,
            owners,
        )
        await self._health.share(kept)  # for the other replicas, when the store is shared
        return registry_pb2.HealthReportAck()
