"""The catalog's RPCs (Registry service: Register, Renew, Deregister, ListInstances): proto in,
registry.catalog, proto out. The caller is the one the interceptor authorized; which agent
may touch which instance is the catalog's rule."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Final

import grpc

from meshwarden.registry import keyset, wire
from meshwarden.registry.api.service import Handler
from meshwarden.registry.authz import current_caller
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.health_reports import HealthReports
from meshwarden.registry.model import Instance
from meshwarden.v1 import registry_pb2

MAX_INSTANCES_PAGE: Final = 10_000

Context = grpc.aio.ServicerContext[Any, Any]


class CatalogApi:
    def __init__(self, catalog: Catalog, health: HealthReports, *, heartbeat_interval_s: float) -> None:
        self._catalog, self._health, self._heartbeat_interval_s = catalog, health, heartbeat_interval_s

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "Register": self.Register,
            "Renew": self.Renew,
            "Deregister": self.Deregister,
            "ListInstances": self.ListInstances,
        }

    async def Register(self, request: registry_pb2.RegisterRequest, _: Context) -> registry_pb2.RegisterResponse:
        registration = await self._catalog.register(wire.spec_from_proto(request.instance), current_caller())
        return registry_pb2.RegisterResponse(
            instance_id=registration.instance.instance_id,
            lease_ttl=wire.duration(self._catalog.lease_ttl_s),
            heartbeat_interval=wire.duration(self._heartbeat_interval_s),
            revision=registration.revision,
        )

    async def Renew(self, request: registry_pb2.RenewRequest, _: Context) -> registry_pb2.RenewResponse:
        await self._catalog.renew(request.instance_id, current_caller())
        return registry_pb2.RenewResponse(lease_ttl=wire.duration(self._catalog.lease_ttl_s))

    async def Deregister(self, request: registry_pb2.DeregisterRequest, _: Context) -> registry_pb2.DeregisterResponse:
        await self._catalog.deregister(request.instance_id, current_caller())
        return registry_pb2.DeregisterResponse()

    async def ListInstances(self, request: registry_pb2.ListInstancesRequest, _: Context) -> bytes:
        listing = await self._catalog.list_instances(agent=request.agent, capability=request.capability)
        instances, next_cursor = _page(listing.instances, request.limit, request.cursor)
        health = self._health.health([i.instance_id for i in instances], listing.registered.__contains__)
        # Thousands of instances with their schemas take tens of ms to convert and encode:
        # in a worker thread, answered as bytes (registry.api.service).
        return await asyncio.to_thread(
            lambda: registry_pb2.ListInstancesResponse(
                instances=wire.instances_to_proto(instances, with_enrolment=True),
                revision=listing.revision,
                health=[wire.health_to_proto(h) for h in health],
                next_cursor=next_cursor,
            ).SerializeToString()
        )


def _page(instances: Sequence[Instance], limit: int, cursor: str) -> tuple[Sequence[Instance], str]:
    """A page of the instances (listed by agent, then id) after the keyset cursor; limit 0: all."""
    if limit > MAX_INSTANCES_PAGE:
        raise InvalidInput("limit", f"is {limit}; at most {MAX_INSTANCES_PAGE} instances per page (0: all)")
    if cursor:
        agent, instance_id = keyset.decode(cursor, str, str)
        instances = [i for i in instances if (i.agent, i.instance_id) > (agent, instance_id)]
    if not limit or len(instances) <= limit:
        return instances, ""
    page = instances[:limit]
    return page, keyset.encode(page[-1].agent, page[-1].instance_id)
