"""Routes' RPCs (Registry service: SetRoute, ListRoutes): proto in, registry.routes, proto out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from meshwarden.registry import keyset, wire
from meshwarden.registry.api.service import Handler
from meshwarden.registry.authz import current_caller
from meshwarden.registry.routes import Routes
from meshwarden.registry.watch_hub import WatchHub
from meshwarden.v1 import registry_pb2

Context = grpc.aio.ServicerContext[Any, Any]


class RoutesApi:
    def __init__(self, routes: Routes, hub: WatchHub) -> None:
        self._routes, self._hub = routes, hub

    def handlers(self) -> Mapping[str, Handler]:
        return {"SetRoute": self.SetRoute, "ListRoutes": self.ListRoutes}

    async def SetRoute(self, request: registry_pb2.SetRouteRequest, _: Context) -> registry_pb2.SetRouteResponse:
        watchers = self._hub.watcher_count
        stored = await self._routes.set(request.capability, dict(request.weights), current_caller())
        return registry_pb2.SetRouteResponse(route=wire.route_to_proto(stored), watchers=watchers)

    async def ListRoutes(self, request: registry_pb2.ListRoutesRequest, _: Context) -> registry_pb2.ListRoutesResponse:
        routes, next_cursor = keyset.page(
            await self._routes.list(), lambda r: (r.capability,), (str,), request.cursor, request.limit, keyset.MAX_PAGE
        )
        return registry_pb2.ListRoutesResponse(routes=[wire.route_to_proto(r) for r in routes], next_cursor=next_cursor)
