"""Kill switches and version isolations: stored, expired, and published as one set.

Every change (kill, lift, ttl end, isolate, lift isolation) is one transaction that writes the
row, bumps the controls revision and appends its audit entry; the new whole set is then
published to every watcher (`ControlsChanged`). The set is small (operators engage switches by
hand), so sidecars always receive all of it and replace what they had: there is no ordering
between partial updates to get wrong, and a sidecar that reconnects needs nothing else.

A switch with a ttl ends at `expires_at` (wall clock): `expire_forever` lifts it here, and every
sidecar also stops enforcing it at that time by its own clock, so an unreachable registry
cannot keep a temporary stop in force.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from meshwarden.clock import Clock
from meshwarden.control_scopes import ScopeError, VersionTarget, check_reason, check_scope, describe
from meshwarden.registry import audit
from meshwarden.registry.audit import Audit
from meshwarden.registry.authz import Caller
from meshwarden.registry.errors import InvalidInput, UnknownControl
from meshwarden.registry.store import Store

log = logging.getLogger(__name__)

MIN_TTL_S: Final = 1.0
MAX_TTL_S: Final = 30 * 24 * 3600.0
_EXPIRY_POLL_S: Final = 1.0


@dataclass(frozen=True, kw_only=True, slots=True)
class KillSwitch:
    id: str
    scope_kind: int  # controls_pb2.ScopeKind
    scope_value: str
    reason: str
    created_by: str
    created_at: float
    expires_at: float | None = None

    @property
    def scope(self) -> str:
        return describe(self.scope_kind, self.scope_value)


@dataclass(frozen=True, kw_only=True, slots=True)
class Isolation:
    agent: str
    version: str
    reason: str
    created_by: str
    created_at: float

    @property
    def target(self) -> str:
        return f"{self.agent}@{self.version}"


@dataclass(frozen=True, kw_only=True, slots=True)
class ControlsSet:
    revision: int
    kill_switches: tuple[KillSwitch, ...]
    isolations: tuple[Isolation, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ControlsChanged:
    """A hub event: the set of controls in force changed (catalog revisions unaffected)."""

    controls: ControlsSet


class Controls:
    def __init__(
        self, store: Store, clock: Clock, audit_log: Audit, publish: Callable[[ControlsChanged], None]
    ) -> None:
        self._store, self._clock, self._audit, self._publish = store, clock, audit_log, publish
        self._changed = asyncio.Event()  # wakes the expiry loop when a switch with a ttl arrives

    @property
    def revision(self) -> int:
        return int(self._store.query("SELECT value FROM meta WHERE key = 'controls_revision'")[0][0])

    def current(self) -> ControlsSet:
        return ControlsSet(
            revision=self.revision, kill_switches=tuple(self.kills()), isolations=tuple(self.isolations())
        )

    def kills(self) -> list[KillSwitch]:
        rows = self._store.query(
            "SELECT id, scope_kind, scope_value, reason, created_by, created_at, expires_at FROM kill_switches "
            "ORDER BY created_at, id"
        )
        return [_kill_from_row(r) for r in rows]

    def isolations(self) -> list[Isolation]:
        rows = self._store.query(
            "SELECT agent, version, reason, created_by, created_at FROM isolations ORDER BY agent, version"
        )
        return [Isolation(agent=r[0], version=r[1], reason=r[2], created_by=r[3], created_at=r[4]) for r in rows]

    def kill(self, kind: int, value: str, reason: str, ttl_s: float, caller: Caller) -> tuple[KillSwitch, int]:
        """Engages a switch; returns it and the controls revision that carries it."""
        try:
            value, reason = check_scope(kind, value), check_reason(reason)
        except ScopeError as exc:
            raise InvalidInput("request", str(exc)) from exc
        if ttl_s and not MIN_TTL_S <= ttl_s <= MAX_TTL_S:
            raise InvalidInput("ttl", f"must be from {MIN_TTL_S:.0f} s to 30 days, got {ttl_s:g} s")
        switch_id = "ks-" + secrets.token_hex(4)
        ttl = f"ttl {ttl_s:g} s" if ttl_s else "until lifted"
        entry = self._audit.entry(caller, "kill", describe(kind, value), reason, f"{switch_id}, {ttl}")
        switch = KillSwitch(
            id=switch_id,
            scope_kind=kind,
            scope_value=value,
            reason=reason,
            created_by=entry.actor,
            created_at=entry.at,
            expires_at=entry.at + ttl_s if ttl_s else None,
        )
        revision = self._change(
            "INSERT INTO kill_switches (id, scope_kind, scope_value, reason, created_by, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (switch.id, kind, value, reason, switch.created_by, switch.created_at, switch.expires_at),
            entry,
        )
        if ttl_s:
            self._changed.set()
        return switch, revision

    def lift(
        self, switch_id: str, reason: str, caller: Caller | None, action: str = "kill.lift"
    ) -> tuple[KillSwitch, int]:
        switch = self._kill(switch_id)
        entry = self._audit.entry(caller, action, switch.scope, reason.strip()[:1000], switch.id)
        revision = self._change("DELETE FROM kill_switches WHERE id = ?", (switch_id,), entry)
        return switch, revision

    def isolate(self, target: VersionTarget, reason: str, caller: Caller) -> tuple[Isolation, int]:
        try:
            reason = check_reason(reason)
        except ScopeError as exc:
            raise InvalidInput("reason", str(exc)) from exc
        entry = self._audit.entry(caller, "isolate", str(target), reason)
        isolation = Isolation(
            agent=target.agent, version=target.version, reason=reason, created_by=entry.actor, created_at=entry.at
        )
        revision = self._change(
            "INSERT OR REPLACE INTO isolations (agent, version, reason, created_by, created_at) VALUES (?, ?, ?, ?, ?)",
            (isolation.agent, isolation.version, reason, isolation.created_by, isolation.created_at),
            entry,
        )
        return isolation, revision

    def lift_isolation(self, target: VersionTarget, reason: str, caller: Caller) -> tuple[Isolation, int]:
        found = [i for i in self.isolations() if i.agent == target.agent and i.version == target.version]
        if not found:
            raise UnknownControl(f"{target} is not isolated; see meshwarden isolate list")
        entry = self._audit.entry(caller, "isolate.lift", str(target), reason.strip()[:1000])
        revision = self._change(
            "DELETE FROM isolations WHERE agent = ? AND version = ?", (target.agent, target.version), entry
        )
        return found[0], revision

    def expire(self) -> list[KillSwitch]:
        """Lifts every switch whose ttl ended; returns them."""
        now = self._clock.wall()
        ended = [s for s in self.kills() if s.expires_at is not None and s.expires_at <= now]
        for switch in ended:
            self.lift(switch.id, "its ttl ended", None, action="kill.expire")
            log.info("kill switch %s (%s) expired", switch.id, switch.scope)
        return ended

    async def expire_forever(self) -> None:
        while True:
            self.expire()
            ends = [s.expires_at for s in self.kills() if s.expires_at is not None]
            wait = min([_EXPIRY_POLL_S, *(max(e - self._clock.wall(), 0.0) for e in ends)])
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), wait)
            except TimeoutError:
                pass

    def _kill(self, switch_id: str) -> KillSwitch:
        for switch in self.kills():
            if switch.id == switch_id:
                return switch
        raise UnknownControl(f"no kill switch {switch_id!r} is in force; see meshwarden kill list")

    def _change(self, sql: str, parameters: tuple[object, ...], entry: audit.AuditEntry) -> int:
        with self._store.transaction() as db:
            db.execute(sql, parameters)
            db.execute("UPDATE meta SET value = value + 1 WHERE key = 'controls_revision'")
            audit.write(db, entry)
        current = self.current()
        self._publish(ControlsChanged(controls=current))
        return current.revision


def _kill_from_row(row: tuple[object, ...]) -> KillSwitch:
    expires = row[6]
    return KillSwitch(
        id=str(row[0]),
        scope_kind=int(str(row[1])),
        scope_value=str(row[2]),
        reason=str(row[3]),
        created_by=str(row[4]),
        created_at=float(str(row[5])),
        expires_at=None if expires is None else float(str(expires)),
    )
