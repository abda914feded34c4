"""The gRPC face of the registry (meshwarden.v1.Registry): proto in, catalog call, proto out.

It makes no decisions of its own. Errors become statuses in one place, `status_for`:
invalid input is INVALID_ARGUMENT naming the field, an unknown or expired lease NOT_FOUND,
a watcher cut off (it fell behind, or the registry is stopping) or a storage failure
UNAVAILABLE, so clients retry; anything else is a bug: INTERNAL with a generic message, while
the full traceback goes to the registry's log. No exception ends the process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, NoReturn, TypeVar

import grpc

from meshwarden.v1 import registry_pb2, registry_pb2_grpc
from registry import wire
from registry.catalog import Catalog
from registry.errors import InvalidInput, StoreError, UnknownInstance
from registry.watch_hub import WatchEnded, WatchHub

log = logging.getLogger(__name__)

SERVICE_NAME: Final[str] = registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name

Request = TypeVar("Request")
Response = TypeVar("Response")
Context = grpc.aio.ServicerContext[Any, Any]


class RegistryService(registry_pb2_grpc.RegistryServicer):
    def __init__(self, catalog: Catalog, hub: WatchHub, *, heartbeat_interval_s: float) -> None:
        self._catalog, self._hub, self._heartbeat_interval_s = catalog, hub, heartbeat_interval_s

    async def Register(
        self, request: registry_pb2.RegisterRequest, context: Context
    ) -> registry_pb2.RegisterResponse:
        return await _rescue("Register", self._register, request, context)

    async def Renew(
        self, request: registry_pb2.RenewRequest, context: Context
    ) -> registry_pb2.RenewResponse:
        return await _rescue("Renew", self._renew, request, context)

    async def Deregister(
        self, request: registry_pb2.DeregisterRequest, context: Context
    ) -> registry_pb2.DeregisterResponse:
        return await _rescue("Deregister", self._deregister, request, context)

    async def ListInstances(
        self, request: registry_pb2.ListInstancesRequest, context: Context
    ) -> registry_pb2.ListInstancesResponse:
        return await _rescue("ListInstances", self._list_instances, request, context)

    async def Watch(
        self, request: registry_pb2.WatchRequest, context: Context
    ) -> AsyncIterator[registry_pb2.WatchEvent]:
        # Subscribe before reading the catalog, with no await in between: every change after
        # the replay or snapshot is then in the subscription, and older ones are skipped below.
        subscription = self._hub.subscribe()
        try:
            first, revision = self._catch_up(request.since_revision)
            await context.send_initial_metadata(())  # the client knows the stream is up
            for message in first:
                yield message
            while True:
                event = await subscription.next()
                if event.revision > revision:
                    yield wire.event_to_proto(event)
                    revision = event.revision
        except Exception as exc:  # noqa: BLE001 -- the stream's rescue: the error becomes a status
            await _abort(context, exc, "Watch")
        finally:
            self._hub.unsubscribe(subscription)

    def _register(self, request: registry_pb2.RegisterRequest) -> registry_pb2.RegisterResponse:
        registration = self._catalog.register(wire.spec_from_proto(request.instance))
        return registry_pb2.RegisterResponse(
            instance_id=registration.instance.instance_id,
            lease_ttl=wire.duration(self._catalog.lease_ttl_s),
            heartbeat_interval=wire.duration(self._heartbeat_interval_s),
            revision=registration.revision,
        )

    def _renew(self, request: registry_pb2.RenewRequest) -> registry_pb2.RenewResponse:
        self._catalog.renew(request.instance_id)
        return registry_pb2.RenewResponse(lease_ttl=wire.duration(self._catalog.lease_ttl_s))

    def _deregister(self, request: registry_pb2.DeregisterRequest) -> registry_pb2.DeregisterResponse:
        self._catalog.deregister(request.instance_id)
        return registry_pb2.DeregisterResponse()

    def _list_instances(self, request: registry_pb2.ListInstancesRequest) -> registry_pb2.ListInstancesResponse:
        listing = self._catalog.list_instances(agent=request.agent, capability=request.capability)
        return registry_pb2.ListInstancesResponse(
            instances=wire.instances_to_proto(listing.instances), revision=listing.revision
        )

    def _catch_up(self, since_revision: int) -> tuple[list[registry_pb2.WatchEvent], int]:
        """The replay after `since_revision` when the log holds all of it, else a snapshot;
        with the revision the watcher is at afterwards."""
        missed = self._catalog.events_after(since_revision) if since_revision > 0 else None
        if missed is not None:
            log.info("watcher resumed from revision %d: replaying %d event(s)", since_revision, len(missed))
            return [wire.event_to_proto(e) for e in missed], max([since_revision, *(e.revision for e in missed)])
        snapshot = self._catalog.snapshot()
        log.info(
            "watcher from revision %d: snapshot of %d instance(s) at revision %d",
            since_revision, len(snapshot.instances), snapshot.revision,
        )
        return [wire.snapshot_to_proto(snapshot)], snapshot.revision


def status_for(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing message for an error raised while serving a call."""
    if isinstance(exc, InvalidInput):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, UnknownInstance):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, WatchEnded):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, StoreError):
        return grpc.StatusCode.UNAVAILABLE, "registry storage failed; retry shortly (details in the registry log)"
    return grpc.StatusCode.INTERNAL, "registry fault; the registry log has the details"


async def _rescue(
    method: str, handler: Callable[[Request], Response], request: Request, context: Context
) -> Response:
    """Runs one unary handler; any error it raises ends the call with the status `status_for` picks."""
    try:
        return handler(request)
    except Exception as exc:  # noqa: BLE001 -- the unary rescue: every error becomes a status here
        await _abort(context, exc, method)


async def _abort(context: Context, exc: Exception, method: str) -> NoReturn:
    code, message = status_for(exc)
    if isinstance(exc, WatchEnded):
        log.info("watch stream ended: %s", exc)
    elif code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE):
        log.error("%s failed", method, exc_info=exc)
    await context.abort(code, message)
    raise RuntimeError("context.abort returned")  # it always raises; this keeps the types honest
