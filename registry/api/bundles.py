"""Policy bundles' RPCs (Registry service: PushBundle, ReportBundleStatus, ListBundleStatus):
proto in, registry.bundles, proto out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import grpc

from meshwarden.registry import keyset, wire
from meshwarden.registry.api.service import Handler
from meshwarden.registry.authz import current_caller
from meshwarden.registry.bundles import Bundles
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.receipts import Receipts
from meshwarden.registry.watch_hub import WatchHub
from meshwarden.v1 import registry_pb2

# Sidecars report their bundle status at least this often (sidecar/app.py), so a report this
# recent means the sidecar is alive even when it is not in the catalog (a pure caller).
REPORT_FRESH_S: Final = 45.0
MAX_STATUS_PAGE: Final = 10_000  # as ListInstances

Context = grpc.aio.ServicerContext[Any, Any]


class BundlesApi:
    def __init__(self, bundles: Bundles, catalog: Catalog, hub: WatchHub, receipts: Receipts) -> None:
        self._bundles, self._catalog, self._hub, self._receipts = bundles, catalog, hub, receipts

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "PushBundle": self.PushBundle,
            "ReportBundleStatus": self.ReportBundleStatus,
            "ListBundleStatus": self.ListBundleStatus,
        }

    async def PushBundle(self, request: registry_pb2.PushBundleRequest, _: Context) -> registry_pb2.PushBundleResponse:
        watchers = self._hub.watcher_count
        stored = await self._bundles.push(request.artifact, current_caller())
        return registry_pb2.PushBundleResponse(
            name=stored.name, revision=stored.revision, digest=stored.digest, watchers=watchers
        )

    async def ReportBundleStatus(
        self, request: registry_pb2.BundleStatusReport, _: Context
    ) -> registry_pb2.BundleStatusAck:
        instance = await self._catalog.instance(request.instance_id)
        chain = await self._receipts.head(request.instance_id) if instance is None and request.instance_id else None
        await self._bundles.report(
            instance_id=request.instance_id,
            registered_agent=instance.agent if instance is not None else None,
            chain_owner=chain.sidecar_spiffe_id if chain is not None else None,
            caller=current_caller(),
            active_revision=request.active_revision,
            active_digest=request.active_digest,
            refused_revision=request.refused_revision,
            refusal=request.refusal,
        )
        return registry_pb2.BundleStatusAck()

    async def ListBundleStatus(
        self, request: registry_pb2.ListBundleStatusRequest, _: Context
    ) -> registry_pb2.ListBundleStatusResponse:
        if request.limit > MAX_STATUS_PAGE:
            raise InvalidInput("limit", f"is {request.limit}; at most {MAX_STATUS_PAGE} reports per page (0: all)")
        after = keyset.decode(request.cursor, str, str) if request.cursor else None
        latest = await self._bundles.latest()
        in_catalog = (await self._catalog.list_instances()).registered
        recent = self._bundles.now() - REPORT_FRESH_S
        listed = [
            (s, s.instance_id in in_catalog or s.reported_at >= recent)
            for s in sorted(await self._bundles.statuses(), key=lambda s: (s.agent, s.instance_id))
            if after is None or (s.agent, s.instance_id) > after
        ]
        if request.live_only:
            listed = [(s, live) for s, live in listed if live]
        page = listed[: request.limit] if request.limit else listed
        more = len(page) < len(listed)
        return registry_pb2.ListBundleStatusResponse(
            latest=wire.bundle_to_proto(latest, with_artifact=False) if latest else None,
            sidecars=[wire.bundle_status_to_proto(s, live=live) for s, live in page],
            next_cursor=keyset.encode(page[-1][0].agent, page[-1][0].instance_id) if more else "",
        )
