"""The audit log: who did what to the mesh, when and why, for every operator write.

Written in the same transaction as the write it records (kill switches, isolations), or right
after it (bundle push, route set), in the `audit_log` table; read by `meshwarden audit list`.
The actor is what the credential proves (the operator token's fingerprint); the user name the
CLI sends is kept beside it as a claim, never as the actor.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import Final

from meshwarden.clock import Clock
from meshwarden.registry.authz import Caller
from meshwarden.registry.store import Store

log = logging.getLogger(__name__)

REGISTRY_ACTOR: Final = "registry"  # what the registry does on its own (a ttl ending)
DEFAULT_LIMIT: Final = 1000


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEntry:
    id: int = 0
    at: float
    actor: str
    claimed_user: str = ""
    action: str
    target: str
    reason: str = ""
    detail: str = ""


def actor_of(caller: Caller) -> str:
    """The proven identity behind a write: the operator credential's id, else the SVID's."""
    if caller.operator_id:
        return caller.operator_id
    if caller.identity is not None:
        return caller.identity.spiffe_id
    return str(caller)


class Audit:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store, self._clock = store, clock

    def entry(self, caller: Caller | None, action: str, target: str, reason: str = "", detail: str = "") -> AuditEntry:
        """An entry stamped now; `caller` None means the registry acted on its own."""
        return AuditEntry(
            at=self._clock.wall(),
            actor=actor_of(caller) if caller is not None else REGISTRY_ACTOR,
            claimed_user=caller.claimed_user if caller is not None else "",
            action=action,
            target=target,
            reason=reason,
            detail=detail,
        )

    def record(self, caller: Caller | None, action: str, target: str, reason: str = "", detail: str = "") -> None:
        """Records one write in its own transaction."""
        with self._store.transaction() as db:
            write(db, self.entry(caller, action, target, reason, detail))

    def list(self, since: float = 0.0, limit: int = DEFAULT_LIMIT) -> list[AuditEntry]:
        """The newest `limit` entries at or after `since`, oldest first."""
        rows = self._store.query(
            "SELECT id, at, actor, claimed_user, action, target, reason, detail FROM audit_log "
            "WHERE at >= ? ORDER BY id DESC LIMIT ?",
            (since, limit),
        )
        return [
            AuditEntry(
                id=r[0], at=r[1], actor=r[2], claimed_user=r[3], action=r[4], target=r[5], reason=r[6], detail=r[7]
            )
            for r in reversed(rows)
        ]


def write(db: sqlite3.Connection, entry: AuditEntry) -> None:
    """Appends `entry` inside the caller's transaction (so the write and its record commit together)."""
    db.execute(
        "INSERT INTO audit_log (at, actor, claimed_user, action, target, reason, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (entry.at, entry.actor, entry.claimed_user, entry.action, entry.target, entry.reason, entry.detail),
    )
    log.info(
        "audit: %s %s %s%s%s",
        entry.actor,
        entry.action,
        entry.target,
        f" because {entry.reason!r}" if entry.reason else "",
        f" ({entry.detail})" if entry.detail else "",
    )
