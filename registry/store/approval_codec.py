"""How the stores keep an approval: the columns they query on, and a JSON body for the rest.
Shared by every implementation of the seam, so SQLite and PostgreSQL store and read the same."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from meshwarden.registry.errors import StoreError
from meshwarden.registry.store.records import StoredApproval


def approval_body(approval: StoredApproval) -> str:
    return json.dumps(
        {
            "arguments_json": approval.arguments_json,
            "risk_factors": list(approval.risk_factors),
            "policy_ids": list(approval.policy_ids),
            "bundle": approval.bundle,
            "session_id": approval.session_id,
            "workflow_id": approval.workflow_id,
            "call_id": approval.call_id,
        },
        separators=(",", ":"),
    )


def approval_from_row(row: Sequence[Any]) -> StoredApproval:
    """An approval from its row: the columns in the stores' order, the body at index 7."""
    try:
        body = json.loads(row[7])
    except ValueError as exc:
        raise StoreError(f"corrupt approval record {row[0]!r}: {exc}") from exc
    return StoredApproval(
        id=str(row[0]),
        state=str(row[1]),
        agent=str(row[2]),
        spiffe_id=str(row[3]),
        call_kind=str(row[4]),
        capability=str(row[5]),
        arguments_sha256=str(row[6]),
        requested_at=float(row[8]),
        expires_at=float(row[9]),
        decided_at=None if row[10] is None else float(row[10]),
        decided_by=str(row[11]),
        reason=str(row[12]),
        used_at=None if row[13] is None else float(row[13]),
        used_by_call_id=str(row[14]),
        arguments_json=str(body.get("arguments_json", "")),
        risk_factors=tuple(str(f) for f in body.get("risk_factors", [])),
        policy_ids=tuple(str(p) for p in body.get("policy_ids", [])),
        bundle=str(body.get("bundle", "")),
        session_id=str(body.get("session_id", "")),
        workflow_id=str(body.get("workflow_id", "")),
        call_id=str(body.get("call_id", "")),
    )
