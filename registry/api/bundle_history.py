"""Policy bundle history's RPCs (BundleHistory service: ListBundles, GetBundle): the stored
revisions, for operators' history, pull, rollback and check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import grpc

from meshwarden.registry import keyset, wire
from meshwarden.registry.api.service import Handler
from meshwarden.registry.bundles import Bundles
from meshwarden.registry.errors import InvalidInput, UnknownBundleRevision
from meshwarden.v1 import bundle_history_pb2, registry_pb2

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000

Context = grpc.aio.ServicerContext[Any, Any]


class BundleHistoryApi:
    def __init__(self, bundles: Bundles) -> None:
        self._bundles = bundles

    def handlers(self) -> Mapping[str, Handler]:
        return {"ListBundles": self.ListBundles, "GetBundle": self.GetBundle}

    async def ListBundles(
        self, request: bundle_history_pb2.ListBundlesRequest, _: Context
    ) -> bundle_history_pb2.ListBundlesResponse:
        if request.limit > MAX_LIMIT:
            raise InvalidInput("limit", f"must be at most {MAX_LIMIT}, got {request.limit}")
        before = int(keyset.decode(request.cursor, int)[0]) if request.cursor else 0
        limit = request.limit or DEFAULT_LIMIT
        stored = await self._bundles.history(limit + 1, before)  # one more: is there a next page?
        page = stored[:limit]
        return bundle_history_pb2.ListBundlesResponse(
            bundles=[wire.bundle_to_proto(b, with_artifact=False) for b in page],
            next_cursor=keyset.encode(page[-1].revision) if len(stored) > limit else "",
        )

    async def GetBundle(self, request: bundle_history_pb2.GetBundleRequest, _: Context) -> registry_pb2.PolicyBundle:
        stored = await self._bundles.revision(request.revision)
        if stored is None:
            raise UnknownBundleRevision(request.revision)
        return wire.bundle_to_proto(stored)
