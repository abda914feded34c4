"""Keep the local catalog in step with the registry's watch stream.

On a broken stream the sidecar keeps routing from what it last knew, reconnects with
exponential backoff and jitter, and resumes from the last revision it applied, so the
registry sends only what was missed (or a snapshot when it no longer holds that much).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import grpc

from meshwarden.v1 import registry_pb2, registry_pb2_grpc
from sidecar.catalog import Catalog

log = logging.getLogger(__name__)

_FIRST_BACKOFF_S = 0.1
_MAX_BACKOFF_S = 5.0


async def run(registry: Callable[[], registry_pb2_grpc.RegistryStub], catalog: Catalog, rng: random.Random) -> None:
    backoff = _FIRST_BACKOFF_S
    outage = False
    while True:
        try:
            stream = registry().Watch(registry_pb2.WatchRequest(since_revision=catalog.revision))
            async for event in stream:
                catalog.apply(event)
                backoff = _FIRST_BACKOFF_S
                if outage:
                    log.info("catalog watch resumed at revision %d", catalog.revision)
                    outage = False
        except grpc.aio.AioRpcError as err:
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
