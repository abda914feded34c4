"""Ships the spool's receipts to the registry, off the call path.

Every `interval_s` (and right after a batch, while receipts remain) it sends the oldest
receipts of each chain in the spool, at most `batch_receipts` and `batch_bytes` per
ShipReceipts, over the registry's mTLS port, with the chain's head after the batch signed by
this sidecar's SVID (meshwarden.receipt_signing): the registry stores nothing unsigned. The registry answers with the seq it now holds
durably; receipts up to there are deleted from the spool (by the spool's writer, on the
event loop: `prune`, a few ms a batch, so no other connection ever holds the spool's write
lock that an append would wait for). Nothing
is deleted before that answer, so a registry that is down, or a sidecar killed mid-batch, only
delays receipts: they are shipped again (the registry acknowledges receipts it already holds
without storing them twice), after a restart too, since the spool is on disk.

While the registry is unreachable it backs off (full jitter, doubling from 0.5 s up to 10 s).
A chain the registry refuses (a gap, a fork, receipts of another SPIFFE ID: it says which) is
logged and retried with the same backoff, and does not hold up the other chains. A batch
refused for what a receipt says (INVALID_ARGUMENT, PERMISSION_DENIED) is shipped again one
receipt at a time, and the one refused alone is quarantined (sidecar.receipt_quarantine), so a
poisoned receipt never stalls its chain.

The WAL is checkpointed once every `checkpoint_every` acknowledged receipts, not every round:
the first append after a checkpoint restarts the WAL, and SQLite then fsyncs the WAL header,
on the call path (about 2 ms on the benchmark machine, against 15-30 µs for an append). So
one call in about 2,000 pays it, and the WAL stays under about 16 MB while the registry
acknowledges.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import grpc

from meshwarden.identity.svid import Svid
from meshwarden.receipt_hash import receipt_hash
from meshwarden.receipt_signing import sign_head
from meshwarden.sidecar.receipt_quarantine import Quarantine, stand_in
from meshwarden.sidecar.receipt_spool import Batch, SpoolError, SpoolReader
from meshwarden.sidecar.spool_backlog import Backlog
from meshwarden.v1 import receipts_pb2, receipts_pb2_grpc

log = logging.getLogger(__name__)

_UNREACHABLE: Final = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)
SHIP_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True, kw_only=True)
class ShippingSettings:
    interval_s: float = 1.0
    batch_receipts: int = 200
    batch_bytes: int = 2 * 1024 * 1024  # under gRPC's default 4 MiB message limit at the registry
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    checkpoint_every: int = 2000  # acknowledged receipts


# The spool writer's prune: deletes a batch's receipts up to the seq acknowledged.
Prune = Callable[[Batch, int], int]
# The spool writer's replace: a quarantine receipt in place of (chain, seq), later ones linked again.
Replace = Callable[[str, int, receipts_pb2.Receipt], receipts_pb2.Receipt]
# Refusals about what a receipt says, rather than where it sits in its chain.
_POISON: Final = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED})


class _NotShipped(Exception):
    """This round ended early; retry after a backoff."""


class ReceiptShipper:
    def __init__(
        self,
        reader: SpoolReader,
        prune: Prune,
        stub: Callable[[], receipts_pb2_grpc.ReceiptsStub],
        svid: Callable[[], Svid],
        settings: ShippingSettings,
        rng: random.Random,
        on_backlog: Callable[[Backlog], None] | None = None,
        quarantine: tuple[Replace, Quarantine] | None = None,
    ) -> None:
        self._reader, self._prune, self._stub, self._settings, self._rng = reader, prune, stub, settings, rng
        self._svid, self._on_backlog, self._quarantine = svid, on_backlog, quarantine
        self._round = asyncio.Lock()  # one round at a time: the loop's, or one asked for (ship_now)
        self._refusals: dict[str, str] = {}  # chain -> the last refusal logged, to log each once
        self.shipped = 0  # receipts acknowledged since start (for tests and logs)
        self._checkpointed_at = 0  # `shipped` when the WAL was last checkpointed

    async def run(self) -> None:
        backoff = self._settings.backoff_initial_s
        while True:
            try:
                await self.ship_all()
            except _NotShipped:
                await self._measure()
                await asyncio.sleep(self._rng.uniform(0, backoff))
                backoff = min(backoff * 2, self._settings.backoff_max_s)
                continue
            backoff = self._settings.backoff_initial_s
            await self._measure()
            await asyncio.sleep(self._settings.interval_s)

    async def _measure(self) -> None:
        if self._on_backlog is not None:
            self._on_backlog(await asyncio.to_thread(self._reader.backlog))

    async def ship_now(self, timeout_s: float) -> None:
        """A round right away, for a caller that needs the registry to hold this sidecar's
        receipts (an outcome report: the registry takes it only from an agent whose receipts of
        the session it holds). Best effort: what cannot be shipped now waits for the loop."""
        try:
            # wait_for_ready: a registry connection still in its reconnect backoff (the registry
            # just came back) is waited for within the timeout, not failed with its last error.
            await asyncio.wait_for(self.ship_all(timeout_s, wait_for_ready=True), timeout_s)
        except (_NotShipped, TimeoutError):
            log.info("receipts not all shipped before an outcome report; the loop ships them")

    async def ship_all(self, timeout_s: float = SHIP_TIMEOUT_S, *, wait_for_ready: bool = False) -> None:
        """One round: every chain until the spool is empty. Raises _NotShipped if anything was
        left behind (registry down, or a chain refused)."""
        async with self._round:
            await self._ship_round(timeout_s, wait_for_ready)

    async def _ship_round(self, timeout_s: float, wait_for_ready: bool = False) -> None:
        refused = False
        for chain in await asyncio.to_thread(self._reader.chains):
            try:
                await self._ship_chain(chain, timeout_s, wait_for_ready)
            except _Refused:
                refused = True
        if self.shipped - self._checkpointed_at >= self._settings.checkpoint_every:
            await asyncio.to_thread(self._reader.checkpoint)
            self._checkpointed_at = self.shipped
        if refused:
            raise _NotShipped()

    async def flush(self, timeout_s: float) -> None:
        """A last round at shutdown, so a sidecar that is going away leaves as little behind as
        it can; what remains stays in the spool for the next start."""
        try:
            await asyncio.wait_for(self.ship_all(timeout_s), timeout_s)
        except (_NotShipped, TimeoutError):
            pending = await asyncio.to_thread(self._reader.pending)
            log.warning("stopping with %d receipt(s) not yet shipped; they stay in the spool", pending)

    def close(self) -> None:
        self._reader.close()

    async def _ship_chain(self, chain: str, timeout_s: float, wait_for_ready: bool = False) -> None:
        settings = self._settings
        while True:
            batch = await asyncio.to_thread(self._reader.batch, chain, settings.batch_receipts, settings.batch_bytes)
            if batch is None:
                return
            try:
                acknowledged = await self._send(batch, timeout_s, wait_for_ready)
            except _Refused as refused:
                if refused.code not in _POISON or self._quarantine is None:
                    raise
                await self._one_by_one(chain, batch.last_seq, timeout_s, wait_for_ready)
                continue
            if acknowledged < batch.first_seq:
                log.error(
                    "the registry acknowledged receipts of %s only up to seq %d after a batch from seq %d; retrying",
                    chain,
                    acknowledged,
                    batch.first_seq,
                )
                raise _Refused()
            try:
                deleted = self._prune(batch, acknowledged)
            except SpoolError as exc:
                log.error("%s; retrying", exc)
                raise _NotShipped() from exc
            self.shipped += deleted
            if self._refusals.pop(chain, None) is not None:
                log.info("the registry accepts the receipts of %s again", chain)

    async def _one_by_one(self, chain: str, last_seq: int, timeout_s: float, wait_for_ready: bool) -> None:
        """Ships a refused batch's receipts (up to `last_seq`) one at a time, and quarantines
        the first one refused alone for what it says."""
        while True:
            single = await asyncio.to_thread(self._reader.batch, chain, 1, self._settings.batch_bytes)
            if single is None or single.first_seq > last_seq:
                return  # each passed alone: the refusal was the batch's, and the loop goes on
            try:
                acknowledged = await self._send(single, timeout_s, wait_for_ready)
            except _Refused as refused:
                if refused.code not in _POISON:
                    raise
                await self._quarantine_one(single, refused.details, timeout_s, wait_for_ready)
                return
            if acknowledged < single.first_seq:
                raise _Refused(grpc.StatusCode.FAILED_PRECONDITION, "acknowledged less than was shipped")
            self.shipped += self._prune(single, acknowledged)

    async def _quarantine_one(self, single: Batch, reason: str, timeout_s: float, wait_for_ready: bool) -> None:
        if self._quarantine is None:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, reason)
        replace, quarantine = self._quarantine
        original = receipts_pb2.Receipt()
        original.ParseFromString(single.bodies[0])
        stand = stand_in(original, reason)
        stand.hash = receipt_hash(stand)
        request = receipts_pb2.ShipReceiptsRequest(receipts=[stand])
        request.head.CopyFrom(sign_head(self._svid(), stand.sidecar_instance_id, stand.seq, stand.hash))
        try:
            reply = await self._stub().ShipReceipts(request, timeout=timeout_s, wait_for_ready=wait_for_ready)
        except grpc.aio.AioRpcError as err:
            if err.code() in _UNREACHABLE:
                raise _NotShipped() from err
            log.error(
                "the registry refuses even the quarantine receipt for seq %d of %s (%s: %s): the refusal is not "
                "about the receipt; the chain waits",
                stand.seq,
                stand.sidecar_instance_id,
                err.code().name,
                err.details(),
            )
            raise _Refused(err.code(), err.details() or "") from err
        if reply.acknowledged_seq < stand.seq:
            raise _Refused(grpc.StatusCode.FAILED_PRECONDITION, "the quarantine receipt was not acknowledged")
        replace(single.instance_id, stand.seq, stand_in(original, reason))  # the registry holds it: so must the spool
        await asyncio.to_thread(quarantine.keep, original, single.bodies[0], reason)
        self.shipped += self._prune(single, stand.seq)

    async def _send(self, batch: Batch, timeout_s: float, wait_for_ready: bool = False) -> int:
        request = await asyncio.to_thread(self._request, batch)
        try:
            reply = await self._stub().ShipReceipts(request, timeout=timeout_s, wait_for_ready=wait_for_ready)
        except grpc.aio.AioRpcError as err:
            if err.code() in _UNREACHABLE:
                log.info("registry unreachable for receipts (%s); %s", err.code().name, "retrying with backoff")
                raise _NotShipped() from err
            problem = f"{err.code().name}: {err.details()}"
            if self._refusals.get(batch.instance_id) != problem:
                log.error(
                    "the registry refused receipts %d to %d of %s: %s; they stay in the spool",
                    batch.first_seq,
                    batch.last_seq,
                    batch.instance_id,
                    problem,
                )
                self._refusals[batch.instance_id] = problem
            raise _Refused(err.code(), err.details() or "") from err
        return int(reply.acknowledged_seq)

    def _request(self, batch: Batch) -> receipts_pb2.ShipReceiptsRequest:
        """The batch as a request, its chain's head signed (in a worker thread: parsing and an
        ECDSA signature take a fraction of a millisecond per batch)."""
        request = receipts_pb2.ShipReceiptsRequest()
        for body in batch.bodies:
            request.receipts.add().ParseFromString(body)
        last = request.receipts[-1]
        request.head.CopyFrom(sign_head(self._svid(), last.sidecar_instance_id, last.seq, last.hash))
        return request


class _Refused(Exception):
    """The registry refused one chain's batch; the other chains go on."""

    def __init__(self, code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION, details: str = "") -> None:
        super().__init__(details)
        self.code, self.details = code, details
