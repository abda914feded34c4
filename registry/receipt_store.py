"""Receipts at the registry: each sidecar's hash chain, stored batch by batch, and queried by
session and by time (sessions, timelines and costs are built on `for_session` and `between`).

A batch is stored only if it continues the chain the registry holds for its sidecar: the
first new receipt has the next seq and links to the stored head by prev_hash, and every hash
is what the receipt's contents say (meshwarden.receipt_hash). Receipts the registry already
holds are acknowledged again, so a sidecar that lost an acknowledgement re-ships safely; one
that differs from the stored receipt at its seq is refused (a forked chain). A chain belongs
to the SPIFFE ID that shipped its first batch, and each receipt names it: nobody ships
receipts in another agent's name. A batch is committed with fsync before it is acknowledged,
because the sidecar then deletes it from its spool.

A batch also needs its shipper's signature over the chain's head (registry.receipt_signatures),
and each receipt must name the shipper as the side of the call it was written at: the caller
for an outbound receipt, the callee for an inbound one (registry.receipt_sides).

The head (seq, hash) each sidecar last shipped is kept apart from the rows, so that removing
rows at the end of a chain shows (registry.receipt_verification).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from google.protobuf import timestamp_pb2
from google.protobuf.message import DecodeError

from meshwarden.clock import Clock
from meshwarden.receipt_hash import receipt_hash
from meshwarden.registry import receipt_signatures
from meshwarden.registry.errors import Conflict, InvalidInput, PermissionDenied, StoreError
from meshwarden.registry.receipt_sides import check_sides
from meshwarden.registry.store import Row, Store
from meshwarden.v1 import receipts_pb2

log = logging.getLogger(__name__)

MAX_BATCH: Final = 1000
DIRECTIONS: Final = frozenset({"outbound", "inbound"})
_PAGE: Final = 500

# The columns of `receipts` (registry.store), in order; all but `body` are copied from it.
COLUMNS: Final = (
    "sidecar_instance_id",
    "seq",
    "prev_hash",
    "hash",
    "direction",
    "call_id",
    "session_id",
    "workflow_id",
    "caller_agent",
    "caller_team",
    "callee_agent",
    "callee_team",
    "capability",
    "status",
    "model",
    "cost_micro_usd",
    "started_at",
    "body",
)
_SELECT_BODY: Final = "SELECT body FROM receipts"


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where a sidecar's chain ends, as its sidecar last shipped it."""

    sidecar_instance_id: str
    sidecar_spiffe_id: str
    seq: int
    hash: str
    shipped_at: float


def columns_of(receipt: receipts_pb2.Receipt, body: bytes) -> Row:
    """The row stored for `receipt` (its encoding `body`): what `receipts verify` expects."""
    return (
        receipt.sidecar_instance_id,
        receipt.seq,
        receipt.prev_hash,
        receipt.hash,
        receipt.direction,
        receipt.call_id,
        receipt.session_id,
        receipt.workflow_id,
        receipt.caller_agent,
        receipt.caller_team,
        receipt.callee_agent,
        receipt.callee_team,
        receipt.capability,
        receipt.status,
        receipt.usage.model,
        receipt.usage.cost_micro_usd,
        seconds(receipt.started_at),
        body,
    )


def seconds(timestamp: timestamp_pb2.Timestamp) -> float:
    """A google.protobuf.Timestamp as Unix seconds (the registry's time unit on disk)."""
    return float(timestamp.seconds) + timestamp.nanos / 1e9


class ReceiptStore:
    def __init__(self, store: Store, clock: Clock, *, trust_bundle_pem: bytes) -> None:
        self._store, self._clock, self._trust_bundle_pem = store, clock, trust_bundle_pem

    @property
    def store(self) -> Store:
        return self._store

    @property
    def trust_bundle_pem(self) -> bytes:
        """The CAs whose SVIDs may sign chain heads (what `receipts verify` checks them with)."""
        return self._trust_bundle_pem

    def ship(
        self, shipper_spiffe_id: str, receipts: Sequence[receipts_pb2.Receipt], head: receipts_pb2.SignedHead
    ) -> int:
        """Stores a batch of one chain, signed by its shipper at `head`; returns the seq of the
        chain's head now held durably.

        InvalidInput for a malformed batch or a missing head signature, PermissionDenied for
        receipts of another SPIFFE ID, of a call the shipper took no part in, or a bad signature,
        Conflict (FAILED_PRECONDITION) for a batch that does not continue the stored chain."""
        chain = _check_batch(shipper_spiffe_id, receipts)
        receipt_signatures.check_arriving(
            head, receipts[-1], shipper_spiffe_id, self._trust_bundle_pem, self._clock.wall()
        )
        stored = 0
        with self._store.transaction(durable=True) as db:
            row = db.execute(
                "SELECT sidecar_spiffe_id, head_seq, head_hash FROM receipt_chains WHERE sidecar_instance_id = ?",
                (chain,),
            ).fetchone()
            owner, head_seq, head_hash = row if row is not None else (shipper_spiffe_id, 0, "")
            if owner != shipper_spiffe_id:
                raise PermissionDenied(
                    f"the receipt chain of sidecar {chain} belongs to {owner}; {shipper_spiffe_id} may not add to it"
                )
            for receipt in receipts:
                if receipt.seq <= head_seq:
                    _check_duplicate(db, chain, receipt)
                    continue
                if receipt.seq != head_seq + 1:
                    raise Conflict(
                        f"receipt chain of sidecar {chain}: expected seq {head_seq + 1}, got seq {receipt.seq}; "
                        f"ship from seq {head_seq + 1} on"
                    )
                if receipt.prev_hash != head_hash:
                    raise Conflict(
                        f"receipt chain of sidecar {chain}: seq {receipt.seq} does not link to seq {head_seq} "
                        f"(prev_hash {receipt.prev_hash or '(empty)'}, the registry holds {head_hash or '(none)'})"
                    )
                body = receipt.SerializeToString(deterministic=True)
                db.execute(
                    f"INSERT INTO receipts ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                    columns_of(receipt, body),
                )
                head_seq, head_hash, stored = receipt.seq, receipt.hash, stored + 1
            if stored:
                receipt_signatures.record(db, head, shipper_spiffe_id)
            db.execute(
                "INSERT INTO receipt_chains (sidecar_instance_id, sidecar_spiffe_id, head_seq, head_hash, shipped_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (sidecar_instance_id) DO UPDATE SET "
                "head_seq = excluded.head_seq, head_hash = excluded.head_hash, shipped_at = excluded.shipped_at",
                (chain, shipper_spiffe_id, head_seq, head_hash, self._clock.wall()),
            )
        if stored:
            log.debug("stored %d receipt(s) of sidecar %s up to seq %d", stored, chain, head_seq)
        return int(head_seq)

    def head(self, sidecar_instance_id: str) -> ChainHead | None:
        rows = self._store.query(
            "SELECT sidecar_instance_id, sidecar_spiffe_id, head_seq, head_hash, shipped_at FROM receipt_chains "
            "WHERE sidecar_instance_id = ?",
            (sidecar_instance_id,),
        )
        return ChainHead(*rows[0]) if rows else None

    def heads(self) -> list[ChainHead]:
        rows = self._store.query(
            "SELECT sidecar_instance_id, sidecar_spiffe_id, head_seq, head_hash, shipped_at FROM receipt_chains "
            "ORDER BY sidecar_instance_id"
        )
        return [ChainHead(*row) for row in rows]

    def for_session(self, session_id: str) -> list[receipts_pb2.Receipt]:
        """Every receipt of a session (both sidecars' of each call), ordered by started_at."""
        rows = self._store.query(
            f"{_SELECT_BODY} WHERE session_id = ? ORDER BY started_at, sidecar_instance_id, seq", (session_id,)
        )
        return [_parse(body) for (body,) in rows]

    def between(self, since: float, until: float) -> Iterator[receipts_pb2.Receipt]:
        """Receipts with since <= started_at < until (Unix seconds), ordered by started_at; read a
        page at a time, so a long range does not sit in memory or hold the loop."""
        after: tuple[float, str, int] = (since, "", -1)
        while True:
            rows = self._store.query(
                "SELECT started_at, sidecar_instance_id, seq, body FROM receipts "
                "WHERE started_at >= ? AND started_at < ? AND (started_at, sidecar_instance_id, seq) > (?, ?, ?) "
                f"ORDER BY started_at, sidecar_instance_id, seq LIMIT {_PAGE}",
                (since, until, *after),
            )
            for row in rows:
                yield _parse(row[3])
            if len(rows) < _PAGE:
                return
            after = (rows[-1][0], rows[-1][1], rows[-1][2])

    def count(self) -> int:
        return int(self._store.query("SELECT COUNT(*) FROM receipts")[0][0])


def _check_batch(shipper_spiffe_id: str, receipts: Sequence[receipts_pb2.Receipt]) -> str:
    """The batch's chain (sidecar instance id) if the batch is well formed on its own."""
    if not receipts:
        raise InvalidInput("receipts", "is empty; ship at least one receipt")
    if len(receipts) > MAX_BATCH:
        raise InvalidInput("receipts", f"holds {len(receipts)} receipts; ship at most {MAX_BATCH} per batch")
    chain = receipts[0].sidecar_instance_id
    if not chain:
        raise InvalidInput("receipts[0].sidecar_instance_id", "is required")
    for index, receipt in enumerate(receipts):
        where = f"receipts[{index}]"
        if receipt.sidecar_instance_id != chain:
            raise InvalidInput(
                f"{where}.sidecar_instance_id",
                f"is {receipt.sidecar_instance_id!r}, not {chain!r}: one chain per batch",
            )
        if receipt.sidecar_spiffe_id != shipper_spiffe_id:
            raise PermissionDenied(
                f"{where} (seq {receipt.seq}) was written by {receipt.sidecar_spiffe_id or 'nobody'}, and the caller "
                f"is {shipper_spiffe_id}: a sidecar ships only its own receipts"
            )
        if receipt.seq < 1 or (index and receipt.seq != receipts[index - 1].seq + 1):
            raise InvalidInput(f"{where}.seq", f"is {receipt.seq}; a batch holds consecutive seqs from 1 up")
        if receipt.direction not in DIRECTIONS:
            raise InvalidInput(f"{where}.direction", f"is {receipt.direction!r}, not 'outbound' or 'inbound'")
        if receipt.hash != receipt_hash(receipt):
            raise InvalidInput(f"{where}.hash", f"does not match the contents of seq {receipt.seq}")
        check_sides(shipper_spiffe_id, receipt, where)
    return chain


def _check_duplicate(db: sqlite3.Connection, chain: str, receipt: receipts_pb2.Receipt) -> None:
    row = db.execute(
        "SELECT hash FROM receipts WHERE sidecar_instance_id = ? AND seq = ?", (chain, receipt.seq)
    ).fetchone()
    if row is None or row[0] != receipt.hash:
        held = "no receipt" if row is None else f"another receipt ({row[0]})"
        raise Conflict(
            f"receipt chain of sidecar {chain}: seq {receipt.seq} was acknowledged before, and the registry holds "
            f"{held} there; run `meshwarden receipts verify --sidecar {chain}`"
        )


def _parse(body: bytes) -> receipts_pb2.Receipt:
    receipt = receipts_pb2.Receipt()
    try:
        receipt.ParseFromString(body)
    except DecodeError as exc:
        raise StoreError(f"a stored receipt is unreadable ({exc}); run `meshwarden receipts verify`") from exc
    return receipt
