"""The signed head of each receipt chain (meshwarden.receipt_signing): checked when a batch
arrives, kept with the chain, checked again by `receipts verify`.

A batch is stored only with a head its shipper signed, for exactly the receipt it ends on,
with an SVID of this trust domain's CA that names the shipper; the newest such head per chain
is kept by the receipt store (earlier ones are implied: the chain links them).
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from meshwarden.receipt_signing import HeadSignatureError, check_head
from meshwarden.registry.errors import InvalidInput, PermissionDenied
from meshwarden.registry.store.records import StoredHead
from meshwarden.v1 import receipts_pb2


def check_arriving(
    head: receipts_pb2.SignedHead,
    last: receipts_pb2.Receipt,
    shipper_spiffe_id: str,
    trust_bundle_pem: bytes,
    now: float,
) -> None:
    """InvalidInput or PermissionDenied unless `head` is `shipper_spiffe_id`'s valid signature
    over the chain ending at `last`, the batch's last receipt."""
    if not head.signature:
        raise InvalidInput(
            "head", "is required: a batch of receipts comes with its sidecar's signature over the chain's head"
        )
    if (head.sidecar_instance_id, head.seq, head.hash) != (last.sidecar_instance_id, last.seq, last.hash):
        raise InvalidInput(
            "head", f"signs seq {head.seq} of {head.sidecar_instance_id!r}, but the batch ends at seq {last.seq}"
        )
    try:
        signer = check_head(head, trust_bundle_pem, now=now)
    except HeadSignatureError as exc:
        raise PermissionDenied(f"the receipt chain head of sidecar {last.sidecar_instance_id}: {exc}") from exc
    if signer != shipper_spiffe_id:
        raise PermissionDenied(
            f"the chain head was signed by {signer}, but the batch was shipped by {shipper_spiffe_id}"
        )


def problem_with(stored_head: StoredHead | None, seq: int, hash_: str, owner: str, trust_bundle_pem: bytes) -> str:
    """What is wrong with a chain's signed head, given where the chain ends ("" when nothing)."""
    if stored_head is None:
        return "no signed head: nothing proves its sidecar wrote this chain"
    head = receipts_pb2.SignedHead()
    try:
        head.ParseFromString(stored_head.signed_head)
    except DecodeError:
        return "its signed head is unreadable (edited)"
    if (head.seq, head.hash) != (seq, hash_) or (stored_head.seq, stored_head.hash) != (seq, hash_):
        return f"seq {seq}: the chain's head is not the one its sidecar signed (seq {head.seq}) (rewritten)"
    try:
        signer = check_head(head, trust_bundle_pem)
    except HeadSignatureError as exc:
        return f"seq {seq}: {exc} (forged)"
    if signer != owner or stored_head.signer_spiffe_id != owner:
        return f"seq {seq}: signed by {signer}, but the chain belongs to {owner} (forged)"
    return ""
