"""`receipts verify`: proves that no stored receipt was altered, removed or added.

For every chain: each receipt's hash is recomputed from its stored encoding; each receipt
links to the one before it; seqs run from 1 with no gap; the columns the registry copies
out of each receipt for queries still say what the receipt says; and the chain ends at the
head its sidecar last shipped, so rows cut from its end show too; that head carries its
sidecar's signature (registry.receipt_signatures), by an SVID of the trust domain's CA for
the chain's owner, and every receipt names that owner as the side of the call it was written
at. So a chain rewritten by someone who can recompute every hash still shows: the registry
holds no sidecar's key. What it cannot see: a whole chain removed together with its head.

`verify_chain` is pure: each store (registry.store) feeds it a chain's stored rows in seq
order, off the event loop, since a large table takes seconds to check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

from google.protobuf.message import DecodeError

from meshwarden.receipt_hash import receipt_hash
from meshwarden.registry import receipt_signatures
from meshwarden.registry.errors import PermissionDenied
from meshwarden.registry.receipt_sides import check_sides
from meshwarden.registry.store.receipt_columns import COLUMNS, Row, columns_of
from meshwarden.registry.store.records import ChainHead, ChainVerdict, ReceiptCheckpoint, StoredHead
from meshwarden.v1 import receipts_pb2

MAX_PROBLEMS: Final = 20  # per chain; a mass edit is named by its first few


__all__ = ["ChainVerdict", "checkpoint_digest", "verify_chain"]


class _Findings:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.more = 0

    def add(self, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        else:
            self.more += 1

    def result(self) -> tuple[str, ...]:
        tail = [f"and {self.more} more problem(s)"] if self.more else []
        return (*self.problems, *tail)


def checkpoint_digest(chain: str, seq: int, hash_: str, cut_at: float) -> str:
    """The digest a retention checkpoint carries: a checkpoint edited afterwards no longer matches it."""
    return "sha256:" + hashlib.sha256(f"{chain}\n{seq}\n{hash_}\n{cut_at!r}".encode()).hexdigest()


def verify_chain(
    chain: str,
    rows: Iterable[Row],
    head: ChainHead | None,
    signed: StoredHead | None,
    trust_bundle_pem: bytes,
    checkpoint: ReceiptCheckpoint | None = None,
) -> ChainVerdict:
    """The verdict on one chain from its stored rows (columns in COLUMNS order, by seq), its
    signed head as stored, checked against the CAs of `trust_bundle_pem`. A chain cut by
    retention starts after its `checkpoint`: the first row kept must follow and link to it."""
    found = _Findings()
    count, expected, last_seq, last_hash = 0, 1, 0, ""
    if checkpoint is not None:
        if checkpoint.digest != checkpoint_digest(chain, checkpoint.seq, checkpoint.hash, checkpoint.cut_at):
            found.add(f"the retention checkpoint at seq {checkpoint.seq} does not match its digest (edited)")
        expected, last_seq, last_hash = checkpoint.seq + 1, checkpoint.seq, checkpoint.hash
    for row in rows:
        count += 1
        seq, body = row[1] if isinstance(row[1], int) else -1, row[-1]
        linked = seq == expected  # after a gap the previous receipt is unknown: no link to check
        if seq != expected:
            missing = f"seq {expected}" if seq == expected + 1 else f"seqs {expected} to {seq - 1}"
            found.add(f"{missing} missing (removed)")
        receipt = receipts_pb2.Receipt()
        try:
            if not isinstance(body, bytes):
                raise DecodeError("not a blob")
            receipt.ParseFromString(body)
        except DecodeError:
            found.add(f"seq {seq}: the stored receipt is unreadable (edited)")
            expected, last_seq, last_hash = seq + 1, seq, str(row[3])
            continue
        if receipt_hash(receipt) != receipt.hash:
            found.add(f"seq {seq}: hash does not match its contents (edited)")
        for name, stored, hashed in zip(COLUMNS, row, columns_of(receipt, body), strict=True):
            if stored != hashed:
                found.add(f"seq {seq}: column {name} is {stored!r}, but the hashed receipt says {hashed!r} (edited)")
        if linked and receipt.prev_hash != last_hash:
            found.add(f"seq {seq}: does not link to seq {seq - 1} (prev_hash differs)")
        if head is not None:
            try:
                check_sides(head.sidecar_spiffe_id, receipt, f"seq {seq}")
            except PermissionDenied as exc:
                found.add(f"{exc} (forged)")
        expected, last_seq, last_hash = seq + 1, seq, receipt.hash
    if head is None:
        found.add(f"no head recorded for this chain (its receipt_chains row was removed); it ends at seq {last_seq}")
    elif last_seq < head.seq:
        found.add(
            f"truncated: the chain ends at seq {last_seq}, but its sidecar shipped up to seq {head.seq} "
            f"(seq {last_seq + 1} to {head.seq} removed)"
        )
    elif last_seq > head.seq:
        found.add(f"seq {head.seq + 1} to {last_seq} lie beyond the head its sidecar shipped (seq {head.seq}): added")
    elif last_hash != head.hash:
        found.add(f"seq {last_seq}: differs from the head its sidecar shipped")
    if head is not None:
        problem = receipt_signatures.problem_with(signed, head.seq, head.hash, head.sidecar_spiffe_id, trust_bundle_pem)
        if problem:
            found.add(problem)
    return ChainVerdict(chain, count, found.result())
