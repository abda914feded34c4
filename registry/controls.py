"""Kill switches and version isolations: stored, expired, and published as one set.

Every change (kill, lift, ttl end, isolate, lift isolation) is one transaction in the store
that writes the row, takes the next controls revision and appends its audit entry; the new
whole set, read in that transaction, is then published to every watcher (`ControlsChanged`).
Changes are published one at a time in revision order, and a committed change is published
even when its caller went away (the write is shielded). The set is small (operators engage
switches by hand), so sidecars always receive all of it and replace what they had: there is
no ordering between partial updates to get wrong, and a sidecar that reconnects needs
nothing else.

A switch with a ttl ends at `expires_at` (wall clock): `expire_forever` lifts it here, and every
sidecar also stops enforcing it at that time by its own clock, so an unreachable registry
cannot keep a temporary stop in force.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from meshwarden import tasks
from meshwarden.clock import Clock
from meshwarden.control_scopes import ScopeError, VersionTarget, check_reason, check_scope, describe
from meshwarden.registry.audit import Audit, logged
from meshwarden.registry.authz import Caller
from meshwarden.registry.errors import InvalidInput, UnknownControl
from meshwarden.registry.store import ControlStore
from meshwarden.registry.store.records import AuditEntry, ControlsSet, Isolation, KillEffect, KillSwitch

log = logging.getLogger(__name__)

MIN_TTL_S: Final = 1.0
MAX_TTL_S: Final = 30 * 24 * 3600.0
_EXPIRY_POLL_S: Final = 1.0

__all__ = ["Controls", "ControlsChanged", "ControlsSet", "Isolation", "KillEffect", "KillSwitch"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ControlsChanged:
    """A hub event: the set of controls in force changed (catalog revisions unaffected)."""

    controls: ControlsSet


class Controls:
    def __init__(
        self, store: ControlStore, clock: Clock, audit_log: Audit, publish: Callable[[ControlsChanged], None]
    ) -> None:
        self._store, self._clock, self._audit, self._publish = store, clock, audit_log, publish
        self._changed = asyncio.Event()  # wakes the expiry loop when a switch with a ttl arrives
        self._changing = asyncio.Lock()
        self.revision = 0  # of the last set published here

    async def load(self) -> None:
        self.revision = (await self._store.current()).revision

    async def catch_up(self) -> None:
        """Publishes the set in force when another replica changed it since the last published here."""
        async with self._changing:
            current = await self._store.current()
            if current.revision > self.revision:
                self._published(current)
                if any(s.expires_at is not None for s in current.kill_switches):
                    self._changed.set()

    def _published(self, controls: ControlsSet) -> None:
        self.revision = controls.revision
        self._publish(ControlsChanged(controls=controls))

    async def current(self) -> ControlsSet:
        return await self._store.current()

    async def kills(self) -> list[KillSwitch]:
        return list((await self._store.current()).kill_switches)

    async def record_effect(self, effect: KillEffect) -> None:
        """Keeps how an engaged switch reached the sidecars, for `kill list` and the console."""
        await self._store.record_effect(effect)

    async def effects(self) -> dict[str, KillEffect]:
        """The time to effect of each switch in force that has one, by switch id."""
        return await self._store.effects()

    async def isolations(self) -> list[Isolation]:
        return list((await self._store.current()).isolations)

    async def kill(self, kind: int, value: str, reason: str, ttl_s: float, caller: Caller) -> tuple[KillSwitch, int]:
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
        revision = await self._change(lambda: self._store.add_kill(switch, entry), entry)
        if ttl_s:
            self._changed.set()
        return switch, revision

    async def lift(
        self, switch_id: str, reason: str, caller: Caller | None, action: str = "kill.lift"
    ) -> tuple[KillSwitch, int]:
        switch = await self._kill(switch_id)
        entry = self._audit.entry(caller, action, switch.scope, reason.strip()[:1000], switch.id)
        revision = await self._change(lambda: self._store.remove_kill(switch_id, entry), entry)
        return switch, revision

    async def isolate(self, target: VersionTarget, reason: str, caller: Caller) -> tuple[Isolation, int]:
        try:
            reason = check_reason(reason)
        except ScopeError as exc:
            raise InvalidInput("reason", str(exc)) from exc
        entry = self._audit.entry(caller, "isolate", str(target), reason)
        isolation = Isolation(
            agent=target.agent, version=target.version, reason=reason, created_by=entry.actor, created_at=entry.at
        )
        revision = await self._change(lambda: self._store.put_isolation(isolation, entry), entry)
        return isolation, revision

    async def lift_isolation(self, target: VersionTarget, reason: str, caller: Caller) -> tuple[Isolation, int]:
        found = [i for i in await self.isolations() if i.agent == target.agent and i.version == target.version]
        if not found:
            raise UnknownControl(f"{target} is not isolated; see meshwarden isolate list")
        entry = self._audit.entry(caller, "isolate.lift", str(target), reason.strip()[:1000])
        revision = await self._change(lambda: self._store.remove_isolation(target.agent, target.version, entry), entry)
        return found[0], revision

    async def expire(self) -> list[KillSwitch]:
        """Lifts every switch whose ttl ended; returns them."""
        now = self._clock.wall()
        ended = [s for s in await self.kills() if s.expires_at is not None and s.expires_at <= now]
        for switch in ended:
            try:
                await self.lift(switch.id, "its ttl ended", None, action="kill.expire")
            except UnknownControl:
                continue  # lifted by an operator meanwhile
            log.info("kill switch %s (%s) expired", switch.id, switch.scope)
        return ended

    async def expire_forever(self) -> None:
        while True:
            await self.expire()
            ends = [s.expires_at for s in await self.kills() if s.expires_at is not None]
            wait = min([_EXPIRY_POLL_S, *(max(e - self._clock.wall(), 0.0) for e in ends)])
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), wait)
            except TimeoutError:
                pass

    async def _kill(self, switch_id: str) -> KillSwitch:
        for switch in await self.kills():
            if switch.id == switch_id:
                return switch
        raise UnknownControl(f"no kill switch {switch_id!r} is in force; see meshwarden kill list")

    async def _change(self, write: Callable[[], Awaitable[ControlsSet | None]], entry: AuditEntry) -> int:
        """Commits one change and publishes the set it leaves, one change at a time; shielded,
        so a committed change is published even when the caller is cancelled."""

        async def commit_and_publish() -> ControlsSet | None:
            async with self._changing:
                changed = await write()
                if changed is not None:
                    logged(entry)
                    if changed.revision > self.revision:  # else a later set was published already
                        self._published(changed)
                return changed

        changed = await tasks.to_completion(commit_and_publish())
        if changed is None:
            raise UnknownControl(f"{entry.target} is no longer in force (changed meanwhile); see meshwarden kill list")
        return changed.revision
