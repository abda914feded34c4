"""Follow the registry's budget set (WatchBudgets) into the ledger, and give the ledger the
registry's slice RPCs. On a broken stream the ledger keeps the budgets it last knew (and its
slices, until they end), and the watch reconnects with backoff."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import grpc

from meshwarden.sidecar.budget_ledger import BudgetLedger
from meshwarden.v1 import budgets_pb2, budgets_pb2_grpc

log = logging.getLogger(__name__)

_FIRST_BACKOFF_S = 0.1
_MAX_BACKOFF_S = 5.0


class RegistrySlices:
    """The ledger's SliceClient over this sidecar's registry link (current SVID, mTLS)."""

    def __init__(self, stub: Callable[[], budgets_pb2_grpc.BudgetsStub]) -> None:
        self._stub = stub

    async def lease(self, request: budgets_pb2.LeaseSliceRequest, timeout: float) -> budgets_pb2.LeaseSliceResponse:
        reply: budgets_pb2.LeaseSliceResponse = await self._stub().LeaseSlice(request, timeout=timeout)
        return reply

    async def sync(self, request: budgets_pb2.SyncSlicesRequest, timeout: float) -> budgets_pb2.SyncSlicesResponse:
        reply: budgets_pb2.SyncSlicesResponse = await self._stub().SyncSlices(request, timeout=timeout)
        return reply


async def run(stub: Callable[[], budgets_pb2_grpc.BudgetsStub], ledger: BudgetLedger, rng: random.Random) -> None:
    backoff = _FIRST_BACKOFF_S
    while True:
        try:
            async for update in stub().WatchBudgets(budgets_pb2.WatchBudgetsRequest()):
                if update.revision != ledger.revision:
                    ledger.apply(update)
                    log.info("budgets at revision %d: %d in force", update.revision, len(update.budgets))
                backoff = _FIRST_BACKOFF_S
        except grpc.aio.AioRpcError as err:
            log.warning(
                "budget watch lost (%s: %s); keeping the %s budgets last known",
                err.code().name,
                err.details(),
                "no" if ledger.empty else "",
            )
        await asyncio.sleep(backoff * (0.5 + rng.random()))
        backoff = min(backoff * 2, _MAX_BACKOFF_S)
