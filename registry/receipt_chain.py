"""The rules a shipped batch of receipts must follow to join its sidecar's chain.

`check_batch` needs only the batch (well formed, one chain, the shipper's own receipts, every
hash what the contents say); it hashes up to MAX_BATCH receipts, so callers run it off the
event loop. `continue_chain` needs what the store holds (the chain's head, and the hash held
at a seq) and runs inside the store's transaction, in every implementation of the seam:
receipts the registry already holds are acknowledged again when identical (a sidecar that
lost an acknowledgement re-ships safely) and refused when they differ (a forked chain); the
first new one has the next seq and links to the head; a chain belongs to the SPIFFE ID that
shipped its first batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from meshwarden.receipt_hash import receipt_hash
from meshwarden.registry.errors import Conflict, InvalidInput, PermissionDenied
from meshwarden.registry.receipt_sides import check_sides
from meshwarden.registry.store.records import ChainHead
from meshwarden.v1 import receipts_pb2

MAX_BATCH: Final = 1000
DIRECTIONS: Final = frozenset({"outbound", "inbound"})


@dataclass(frozen=True, slots=True)
class Continuation:
    """What a batch adds to its chain: the receipts not held yet, and the chain's new head."""

    new: tuple[receipts_pb2.Receipt, ...]
    head_seq: int
    head_hash: str


def check_batch(shipper_spiffe_id: str, receipts: Sequence[receipts_pb2.Receipt]) -> str:
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


def continue_chain(
    shipper_spiffe_id: str,
    chain: str,
    head: ChainHead | None,
    receipts: Sequence[receipts_pb2.Receipt],
    held_hash: Callable[[int], str | None],
) -> Continuation:
    """What the (checked) batch adds after `head`; `held_hash(seq)` is the hash stored at seq.

    PermissionDenied for another SPIFFE ID's chain, Conflict (FAILED_PRECONDITION) for a batch
    that does not continue the stored chain."""
    owner = head.sidecar_spiffe_id if head is not None else shipper_spiffe_id
    head_seq, head_hash = (head.seq, head.hash) if head is not None else (0, "")
    if owner != shipper_spiffe_id:
        raise PermissionDenied(
            f"the receipt chain of sidecar {chain} belongs to {owner}; {shipper_spiffe_id} may not add to it"
        )
    new: list[receipts_pb2.Receipt] = []
    for receipt in receipts:
        if receipt.seq <= head_seq:  # held already: acknowledged again when identical
            _check_duplicate(chain, receipt, held_hash(receipt.seq))
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
        new.append(receipt)
        head_seq, head_hash = receipt.seq, receipt.hash
    return Continuation(tuple(new), head_seq, head_hash)


def _check_duplicate(chain: str, receipt: receipts_pb2.Receipt, held: str | None) -> None:
    if held is None or held != receipt.hash:
        what = "no receipt" if held is None else f"another receipt ({held})"
        raise Conflict(
            f"receipt chain of sidecar {chain}: seq {receipt.seq} was acknowledged before, and the registry holds "
            f"{what} there; run `meshwarden receipts verify --sidecar {chain}`"
        )
