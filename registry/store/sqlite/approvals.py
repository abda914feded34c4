"""The approvals aggregate's storage: the only SQL about approvals (table `approvals`, schema in
registry.store). Each state change is one conditional UPDATE (`WHERE state = ...`) in the same
transaction as its audit entry, so two operators deciding at once, or two calls using one
approval at once, cannot both win: the loser sees that no row changed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from meshwarden.registry.audit import AuditEntry, logged
from meshwarden.registry.errors import StoreError
from meshwarden.registry.store.sqlite import audit
from meshwarden.registry.store.sqlite.blocking import BlockingStore as Store
from meshwarden.registry.store.sqlite.blocking import Row

PENDING: Final = "pending"
APPROVED: Final = "approved"
DENIED: Final = "denied"
EXPIRED: Final = "expired"
USED: Final = "used"

_COLUMNS: Final = (
    "id, state, agent, spiffe_id, call_kind, capability, arguments_sha256, body, requested_at, expires_at, "
    "decided_at, decided_by, reason, used_at, used_by_call_id"
)


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredApproval:
    id: str
    state: str
    agent: str
    spiffe_id: str
    call_kind: str
    capability: str
    arguments_sha256: str
    requested_at: float
    expires_at: float
    # Kept as one JSON body (no query reads them): for the reviewer and the audit trail.
    arguments_json: str = ""
    risk_factors: tuple[str, ...] = ()
    policy_ids: tuple[str, ...] = ()
    bundle: str = ""
    session_id: str = ""
    workflow_id: str = ""
    call_id: str = ""
    decided_at: float | None = None
    decided_by: str = ""
    reason: str = ""
    used_at: float | None = None
    used_by_call_id: str = ""


class ApprovalStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    def insert(self, approval: StoredApproval, entry: AuditEntry) -> None:
        with self._store.transaction() as db:
            db.execute(
                f"INSERT INTO approvals ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    approval.id,
                    approval.state,
                    approval.agent,
                    approval.spiffe_id,
                    approval.call_kind,
                    approval.capability,
                    approval.arguments_sha256,
                    _body(approval),
                    approval.requested_at,
                    approval.expires_at,
                    None,
                    "",
                    "",
                    None,
                    "",
                ),
            )
            audit.append(db, entry)
            logged(entry)

    def get(self, approval_id: str) -> StoredApproval | None:
        rows = self._store.query(f"SELECT {_COLUMNS} FROM approvals WHERE id = ?", (approval_id,))
        return _from_row(rows[0]) if rows else None

    def find(self, agent: str, capability: str, arguments_sha256: str, state: str) -> StoredApproval | None:
        """The oldest approval of these exact arguments in `state`."""
        rows = self._store.query(
            f"SELECT {_COLUMNS} FROM approvals WHERE agent = ? AND capability = ? AND arguments_sha256 = ? "
            "AND state = ? ORDER BY requested_at, id LIMIT 1",
            (agent, capability, arguments_sha256, state),
        )
        return _from_row(rows[0]) if rows else None

    def recent(self, *, pending_only: bool, limit: int) -> list[StoredApproval]:
        where = "WHERE state = 'pending' " if pending_only else ""
        rows = self._store.query(
            f"SELECT {_COLUMNS} FROM approvals {where}ORDER BY requested_at DESC, id LIMIT ?", (limit,)
        )
        return [_from_row(r) for r in rows]

    def due(self, now: float) -> list[StoredApproval]:
        """Pending or approved approvals whose time ended."""
        rows = self._store.query(
            f"SELECT {_COLUMNS} FROM approvals WHERE state IN ('pending', 'approved') AND expires_at <= ?", (now,)
        )
        return [_from_row(r) for r in rows]

    def decide(
        self, approval_id: str, from_state: str, to_state: str, at: float, by: str, reason: str, entry: AuditEntry
    ) -> bool:
        """Moves one approval from `from_state` to `to_state`; False when it was not in `from_state`."""
        with self._store.transaction() as db:
            changed = db.execute(
                "UPDATE approvals SET state = ?, decided_at = ?, decided_by = ?, reason = ? WHERE id = ? AND state = ?",
                (to_state, at, by, reason, approval_id, from_state),
            ).rowcount
            if changed:
                audit.append(db, entry)
                logged(entry)
        return bool(changed)

    def use(self, approval_id: str, at: float, call_id: str, entry: AuditEntry) -> bool:
        """Marks an approved approval used by `call_id`; False when it was not approved (any more)."""
        with self._store.transaction() as db:
            changed = db.execute(
                "UPDATE approvals SET state = 'used', used_at = ?, used_by_call_id = ? WHERE id = ? AND state = 'approved'",
                (at, call_id, approval_id),
            ).rowcount
            if changed:
                audit.append(db, entry)
                logged(entry)
        return bool(changed)


def _body(approval: StoredApproval) -> str:
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


def _from_row(row: Row) -> StoredApproval:
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
