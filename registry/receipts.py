"""Receipts at the registry: each sidecar's hash chain, stored batch by batch, and queried by
session and by time (sessions, timelines and costs are built on `for_session` and `between`).

A batch is stored only if it continues the chain the registry holds for its sidecar
(registry.receipt_chain: the rules, checked in the store's transaction). A batch is committed
with fsync before it is acknowledged, because the sidecar then deletes it from its spool.
The head (seq, hash) each sidecar last shipped is kept apart from the rows, so that removing
rows at the end of a chain shows (registry.receipt_verification).

Re-hashing up to MAX_BATCH receipts takes milliseconds, so `ship` checks the batch in a
worker thread; the store writes in its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from meshwarden.clock import Clock
from meshwarden.registry.receipt_chain import MAX_BATCH, check_batch
from meshwarden.registry.store import ReceiptStore
from meshwarden.registry.store.records import ChainHead, ChainVerdict
from meshwarden.v1 import receipts_pb2

log = logging.getLogger(__name__)

__all__ = ["MAX_BATCH", "ChainHead", "ChainVerdict", "Receipts"]


class Receipts:
    def __init__(self, store: ReceiptStore, clock: Clock) -> None:
        self._store, self._clock = store, clock

    async def ship(self, shipper_spiffe_id: str, receipts: Sequence[receipts_pb2.Receipt]) -> int:
        """Stores a batch of one chain; returns the seq of the chain's head now held durably.

        InvalidInput for a malformed batch, PermissionDenied for receipts of another SPIFFE ID,
        Conflict (FAILED_PRECONDITION) for a batch that does not continue the stored chain."""
        chain = await asyncio.to_thread(check_batch, shipper_spiffe_id, receipts)
        head = await self._store.ship(shipper_spiffe_id, chain, receipts, self._clock.wall())
        log.debug("sidecar %s shipped %d receipt(s); its chain is held up to seq %d", chain, len(receipts), head)
        return head

    async def head(self, sidecar_instance_id: str) -> ChainHead | None:
        return await self._store.head(sidecar_instance_id)

    async def heads(self) -> list[ChainHead]:
        return await self._store.heads()

    async def for_session(self, session_id: str) -> list[receipts_pb2.Receipt]:
        """Every receipt of a session (both sidecars' of each call), ordered by started_at."""
        return await self._store.for_session(session_id)

    async def between(self, since: float, until: float) -> list[receipts_pb2.Receipt]:
        """Receipts with since <= started_at < until (Unix seconds), ordered by started_at."""
        return await self._store.between(since, until)

    async def count(self) -> int:
        return await self._store.count()

    async def verify(self, sidecar_instance_id: str = "") -> list[ChainVerdict]:
        """A verdict per chain (only `sidecar_instance_id`'s when given), ordered by chain."""
        return await self._store.verify(sidecar_instance_id)
