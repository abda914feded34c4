"""The audit log: who did what to the mesh, when and why, for every operator write.

Each write commits its entry in the same transaction (kill switches, isolations, bundle
pushes, routes: the stores take the entry with the write); `meshwarden audit list` reads
them. The actor is what the credential proves (the operator token's fingerprint); the user
name the CLI sends is kept beside it as a claim, never as the actor.
"""

from __future__ import annotations

import logging
from typing import Final

from meshwarden.clock import Clock
from meshwarden.registry.authz import Caller
from meshwarden.registry.store import AuditStore
from meshwarden.registry.store.records import AuditEntry

log = logging.getLogger(__name__)

REGISTRY_ACTOR: Final = "registry"  # what the registry does on its own (a ttl ending)
DEFAULT_LIMIT: Final = 1000

__all__ = ["DEFAULT_LIMIT", "REGISTRY_ACTOR", "Audit", "AuditEntry", "actor_of", "logged"]


def actor_of(caller: Caller) -> str:
    """The proven identity behind a write: the operator credential's id, else the SVID's."""
    if caller.operator_id:
        return caller.operator_id
    if caller.identity is not None:
        return caller.identity.spiffe_id
    return str(caller)


class Audit:
    def __init__(self, store: AuditStore, clock: Clock) -> None:
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

    async def record(self, caller: Caller | None, action: str, target: str, reason: str = "", detail: str = "") -> None:
        """Records one write in its own transaction (for writes that carry no entry of their own)."""
        entry = self.entry(caller, action, target, reason, detail)
        await self._store.append(entry)
        logged(entry)

    async def record_by(
        self, actor: str, action: str, target: str, reason: str = "", detail: str = "", *, claimed_user: str = ""
    ) -> None:
        """Records what someone with no credential did (a failed console login, by its address)."""
        entry = AuditEntry(
            at=self._clock.wall(),
            actor=actor,
            claimed_user=claimed_user,
            action=action,
            target=target,
            reason=reason,
            detail=detail,
        )
        await self._store.append(entry)
        logged(entry)

    async def page(self, before_id: int, limit: int) -> list[AuditEntry]:
        """At most `limit` entries older than entry `before_id` (0: the newest), newest first."""
        return await self._store.before(before_id, limit)

    async def list(self, since: float = 0.0, limit: int = DEFAULT_LIMIT, before_id: int = 0) -> list[AuditEntry]:
        """The newest `limit` entries at or after `since` (below id `before_id`, when given),
        oldest first."""
        return await self._store.list(since, limit, before_id)


def logged(entry: AuditEntry) -> None:
    """Logs a committed entry (the registry's log mirrors the audit log)."""
    log.info(
        "audit: %s %s %s%s%s",
        entry.actor,
        entry.action,
        entry.target,
        f" because {entry.reason!r}" if entry.reason else "",
        f" ({entry.detail})" if entry.detail else "",
    )
