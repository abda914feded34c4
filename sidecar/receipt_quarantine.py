"""A receipt the registry refuses for what it says (not for where it is in the chain) must not
stall its chain: it is quarantined.

The shipper (sidecar.receipt_shipper) finds it by shipping a refused batch one receipt at a
time: a single receipt refused with INVALID_ARGUMENT or PERMISSION_DENIED is poisoned. In its
place goes a quarantine receipt: the same seq, link and sides of the call (the sidecar's own
ids, the call id, the caller's and callee's agent and SPIFFE ID, times; the direction from
which side names this sidecar), status QUARANTINED,
and why the registry refused the original (error_kind `receipt_quarantined`). It is shipped
alone first; only once the registry holds it does the spool put it in place of the original
and link the later receipts to it again (sidecar.receipt_spool.replace), so a refusal that is
not about the receipt (the quarantine receipt refused too) changes nothing and the chain waits
as before. The chain stays whole and `receipts verify` intact; `session show` and the receipt
itself tell operators what was refused and why; the original is kept for inspection in
`<data-dir>/receipts/quarantine/<chain>-<seq>.pb` (0600), and
`meshwarden_receipts_quarantined_total` counts them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter

from meshwarden.secure_files import ensure_private_dir, write_atomically
from meshwarden.v1 import receipts_pb2

log = logging.getLogger(__name__)

STATUS: Final = "QUARANTINED"
ERROR_KIND: Final = "receipt_quarantined"
MAX_REASON_CHARS: Final = 500
_KEPT: Final = (
    "sidecar_instance_id",
    "sidecar_spiffe_id",
    "call_id",
    "caller_agent",
    "caller_spiffe_id",
    "callee_agent",
    "callee_spiffe_id",
    "callee_instance_id",
    "call_kind",
)


def stand_in(original: receipts_pb2.Receipt, reason: str) -> receipts_pb2.Receipt:
    """The quarantine receipt for `original` (seq, link and hash are the spool's to set)."""
    receipt = receipts_pb2.Receipt(
        status=STATUS,
        error_kind=ERROR_KIND,
        error_message=(
            f"the registry refused this receipt (hash {original.hash}): {reason[:MAX_REASON_CHARS]}; "
            "the sidecar keeps the original in its receipts/quarantine directory"
        ),
    )
    for name in _KEPT:
        setattr(receipt, name, getattr(original, name)[:256])
    receipt.direction = _direction(original)
    receipt.started_at.CopyFrom(original.started_at)
    receipt.ended_at.CopyFrom(original.ended_at)
    receipt.seq, receipt.prev_hash = original.seq, original.prev_hash
    return receipt


def _direction(original: receipts_pb2.Receipt) -> str:
    """The side of the call this sidecar was on, from who the receipt names (what the registry
    checks), not from the field that may be what was refused."""
    if original.caller_spiffe_id == original.sidecar_spiffe_id:
        return "outbound"
    if original.callee_spiffe_id == original.sidecar_spiffe_id:
        return "inbound"
    return original.direction


class Quarantine:
    def __init__(self, data_dir: Path, metrics: CollectorRegistry | None) -> None:
        self._dir = data_dir / "receipts" / "quarantine"
        self._count = Counter(
            "meshwarden_receipts_quarantined",
            "receipts the registry refused for what they say, replaced in their chain by a quarantine receipt",
            registry=metrics,
        )

    def keep(self, original: receipts_pb2.Receipt, body: bytes, reason: str) -> Path:
        """Keeps the refused original (blocking: a file write) and counts it."""
        path = ensure_private_dir(self._dir) / f"{original.sidecar_instance_id}-{original.seq}.pb"
        write_atomically(path, body)
        self._count.inc()
        log.error(
            "quarantined receipt %d of %s (call %s): the registry refused it: %s; a quarantine receipt stands in "
            "its place, and the original is in %s",
            original.seq,
            original.sidecar_instance_id,
            original.call_id,
            reason[:MAX_REASON_CHARS],
            path,
        )
        return path
