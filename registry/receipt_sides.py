"""A sidecar writes receipts only for calls its own agent took part in: as the caller on an
outbound receipt, as the callee on an inbound one. The registry refuses any other receipt
from it, so one agent's certificate cannot describe calls between other agents (their
sessions, costs and policy decisions)."""

from __future__ import annotations

from meshwarden.registry.errors import PermissionDenied
from meshwarden.v1 import receipts_pb2

_AGENT_PATH = "/agent/"


def check_sides(signer_spiffe_id: str, receipt: receipts_pb2.Receipt, where: str) -> None:
    """PermissionDenied unless `signer_spiffe_id` is the side of the call `receipt` was written at."""
    agent = signer_spiffe_id.rpartition(_AGENT_PATH)[2] if _AGENT_PATH in signer_spiffe_id else ""
    side, spiffe_id, name = (
        ("caller", receipt.caller_spiffe_id, receipt.caller_agent)
        if receipt.direction == "outbound"
        else ("callee", receipt.callee_spiffe_id, receipt.callee_agent)
    )
    if spiffe_id != signer_spiffe_id or name != agent:
        raise PermissionDenied(
            f"{where} (seq {receipt.seq}, {receipt.direction}) names {name or '(nobody)'} ({spiffe_id or 'no SPIFFE ID'}) "
            f"as its {side}, but it comes from {signer_spiffe_id}: a sidecar writes receipts only for calls its own "
            f"agent made (outbound) or served (inbound)"
        )
