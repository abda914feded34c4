"""Keep the local catalog in step with the registry's watch stream.

On a broken stream the sidecar keeps routing from what it last knew, reconnects with
exponential backoff and jitter, and resumes from the last revision it applied, so the
registry sends only what was missed (or a snapshot when it no longer holds that much).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

import grpc

from meshwarden.sidecar.catalog import Catalog
from meshwarden.sidecar.routes import RouteTable
from meshwarden.v1 import controls_pb2, registry_pb2, registry_pb2_grpc

log = logging.getLogger(__name__)

_FIRST_BACKOFF_S = 0.1
_MAX_BACKOFF_S = 5.0


OnBundle = Callable[[registry_pb2.PolicyBundle], Awaitable[None]]
OnControls = Callable[[controls_pb2.ControlsUpdate], None]


async def run(
    registry: Callable[[], registry_pb2_grpc.RegistryStub],
    catalog: Catalog,
    rng: random.Random,
    on_bundle: OnBundle,
    bundle_revision: Callable[[], int],
    routes: RouteTable | None = None,
    on_controls: OnControls | None = None,
    instance_id: str = "",
    on_lost: Callable[[], None] | None = None,
) -> None:
    """Follows the watch stream: catalog changes go to `catalog`, policy bundles to `on_bundle`
    (the bundle loader), weighted routes to `routes` and kill switches and isolations to
    `on_controls`, which the stream carries separately from catalog revisions (controls come
    first on every stream, so they are applied before the catalog). `on_lost` is told each
    time the stream breaks."""
    backoff = _FIRST_BACKOFF_S
    outage = False
    while True:
        try:
            request = registry_pb2.WatchRequest(
                since_revision=catalog.revision,
                bundle_revision=bundle_revision(),
                instance_id=instance_id,
                batched=True,  # catalog changes that piled up come as one message
            )
            async for event in registry().Watch(request):
                change = event.WhichOneof("change")
                if change == "controls":
                    if on_controls is not None:
                        on_controls(event.controls)
                    continue
                if change == "bundle":
                    await on_bundle(event.bundle)
                    continue
                if change == "routes":
                    if routes is not None:
                        routes.apply(event.routes)
                    continue
                catalog.apply(event)
                backoff = _FIRST_BACKOFF_S
                if outage:
                    log.info("catalog watch resumed at revision %d", catalog.revision)
                    outage = False
        except grpc.aio.AioRpcError as err:
            if on_lost is not None:
                on_lost()
            if not outage:
                log.warning(
                    "catalog watch lost (%s: %s); routing from the last known catalog (revision %d)",
                    err.code().name,
                    err.details(),
                    catalog.revision,
                )
            outage = True
        await asyncio.sleep(backoff * (0.5 + rng.random()))
        backoff = min(backoff * 2, _MAX_BACKOFF_S)
