"""Receipts at the registry: each sidecar's hash chain, stored batch by batch, and queried by
session and by time (sessions, timelines and costs are built on `for_session` and `between`).

A batch is stored only if it continues the chain the registry holds for its sidecar
(registry.receipt_chain: the rules, checked in the store's transaction), names its shipper as
the side of each call it was written at (registry.receipt_sides), and comes with its
shipper's signature over the chain's head (registry.receipt_signatures), which is kept so
that `verify` shows a chain rewritten by anyone without the sidecar's key. A batch is committed
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
from meshwarden.registry import receipt_signatures
from meshwarden.registry.receipt_chain import MAX_BATCH, check_batch
from meshwarden.registry.store import ReceiptStore
from meshwarden.registry.store.records import ChainHead, ChainVerdict, ToolCallQuery
from meshwarden.v1 import receipts_pb2

log = logging.getLogger(__name__)

__all__ = ["MAX_BATCH", "ChainHead", "ChainVerdict", "Receipts", "ToolCallQuery"]


class Receipts:
    def __init__(self, store: ReceiptStore, clock: Clock, *, trust_bundle_pem: bytes) -> None:
        self._store, self._clock, self._trust_bundle_pem = store, clock, trust_bundle_pem

    async def retain_forever(self, retention_s: float, every_s: float = 3600.0) -> None:
        """Deletes receipts older than `retention_s`, now and then every `every_s`."""
        while True:
            now = self._clock.wall()
            forgotten = await self._store.forget_before(now - retention_s, now)
            if forgotten:
                log.info("deleted %d receipts older than %.0f s (receipts retention)", forgotten, retention_s)
            await asyncio.sleep(every_s)

    async def ship(
        self, shipper_spiffe_id: str, receipts: Sequence[receipts_pb2.Receipt], signed_head: receipts_pb2.SignedHead
    ) -> int:
        """Stores a batch of one chain, signed by its shipper at `signed_head`; returns the seq of
        the chain's head now held durably.

        InvalidInput for a malformed batch or a missing head signature, PermissionDenied for
        receipts of another SPIFFE ID, of a call the shipper took no part in, or a bad signature,
        Conflict (FAILED_PRECONDITION) for a batch that does not continue the stored chain."""
        chain = await asyncio.to_thread(self._check, shipper_spiffe_id, receipts, signed_head)
        head = await self._store.ship(shipper_spiffe_id, chain, receipts, signed_head, self._clock.wall())
        log.debug("sidecar %s shipped %d receipt(s); its chain is held up to seq %d", chain, len(receipts), head)
        return head

    def _check(
        self, shipper_spiffe_id: str, receipts: Sequence[receipts_pb2.Receipt], signed_head: receipts_pb2.SignedHead
    ) -> str:
        chain = check_batch(shipper_spiffe_id, receipts)
        receipt_signatures.check_arriving(
            signed_head, receipts[-1], shipper_spiffe_id, self._trust_bundle_pem, self._clock.wall()
        )
        return chain

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

    async def for_task(self, task_id: str, limit: int) -> list[receipts_pb2.Receipt]:
        """The receipts of calls made for a task (both sidecars' of each), by started_at."""
        return await self._store.for_task(task_id, limit)

    async def count(self) -> int:
        return await self._store.count()

    async def tool_calls(self, query: ToolCallQuery) -> tuple[list[receipts_pb2.Receipt], bool]:
        """MCP tool calls matching `query`, newest first (the tool-call ledger); and whether
        more matched than `query.limit`."""
        return await self._store.tool_calls(query)

    async def verify(self, sidecar_instance_id: str = "") -> list[ChainVerdict]:
        """A verdict per chain (only `sidecar_instance_id`'s when given), ordered by chain."""
        return await self._store.verify(self._trust_bundle_pem, sidecar_instance_id)
