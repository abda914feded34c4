"""Who a session was started for, and who launched it, from its receipts.

The sidecars carry the principal from the session's entry point (sidecar.stages.
session_principal) and refuse an agent's attempt to change it; this is the registry's side of
the same rule, for what no one sidecar can see (a sidecar that forgot the session, a forged
receipt's principal): the first receipt of the session that names a principal wins, by start
time, the entry sidecar's side first. Any other principal a receipt names, carried or refused,
is kept as the conflict, so the operator sees it; it is never adopted.

`launched_by` is the agent whose sidecar the session entered through: the caller of its
earliest call. The session's free labels (meshwarden.session_labels) are its first receipt's
that carries any, by the same order; later ones are not kept (the sidecars carry the first).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from meshwarden.registry.store.receipt_columns import seconds
from meshwarden.registry.store.records import SessionPrincipal
from meshwarden.v1 import receipts_pb2

_OUTBOUND_FIRST: Final = {"outbound": 0, "inbound": 1}


def principal_of(session_id: str, receipts: Iterable[receipts_pb2.Receipt]) -> SessionPrincipal:
    ordered = sorted(receipts, key=lambda r: (seconds(r.started_at), _OUTBOUND_FIRST.get(r.direction, 2), r.seq))
    started_for = next((r.on_behalf_of for r in ordered if r.on_behalf_of), "")
    named = (name for r in ordered for name in (r.on_behalf_of, r.on_behalf_of_refused) if name)
    return SessionPrincipal(
        session_id=session_id,
        started_for=started_for,
        launched_by=ordered[0].caller_agent if ordered else "",
        conflict=next((name for name in named if name != started_for), ""),
        labels=next((tuple(sorted(r.session_labels.items())) for r in ordered if r.session_labels), ()),
    )


def by_session(receipts: Iterable[receipts_pb2.Receipt]) -> dict[str, SessionPrincipal]:
    """The principal of every session the receipts name."""
    grouped: dict[str, list[receipts_pb2.Receipt]] = {}
    for receipt in receipts:
        if receipt.session_id:
            grouped.setdefault(receipt.session_id, []).append(receipt)
    return {session_id: principal_of(session_id, found) for session_id, found in grouped.items()}


def fill(summary: receipts_pb2.SessionSummary, found: SessionPrincipal | None) -> receipts_pb2.SessionSummary:
    """`summary` with the session's principal fields set (in place; returned for chaining)."""
    if found is not None:
        summary.started_for, summary.launched_by = found.started_for, found.launched_by
        summary.started_for_conflict = found.conflict
        summary.labels.update(found.labels)
    return summary
