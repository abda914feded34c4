"""Which live sidecars enforce which controls revision, so a write can answer "enforced by
100/100 sidecars in 38 ms".

A sidecar that watches with its instance id is live while its stream is open. After applying
a ControlsUpdate it acknowledges the revision (Controls.AcknowledgeControls, with the same
SVID it watches with). `wait_for` returns once every sidecar live at that moment acknowledged
the revision, or when the wait ends, naming those that had not; a sidecar whose stream closes
meanwhile no longer counts (it receives the current set first when it reconnects).

With replicas (a ControlWatcherStore), each sidecar watches one replica, so each replica
publishes its watchers and their acknowledgements to the store (`share_forever`: at once
after a change, and every SHARE_EVERY_S to say it is alive), and `wait_for` counts the
watchers of every replica that published within REPLICA_TTL_S: every replica answers the
same N/N. When the store does not answer, a replica counts its own sidecars, as alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Final

from meshwarden.clock import Clock
from meshwarden.registry.errors import PermissionDenied, StoreError, UnknownInstance
from meshwarden.registry.store import ControlWatcherStore
from meshwarden.registry.store.records import ControlWatcher

log = logging.getLogger(__name__)

SHARE_EVERY_S: Final = 2.0
# A replica that has not published for this long (killed, cut off) no longer counts.
REPLICA_TTL_S: Final = 10.0
# How often a wait reads the other replicas' acknowledgements.
POLL_S: Final = 0.1


@dataclass(slots=True)
class _Watcher:
    streams: int = 0
    acknowledged: int = 0


# A watcher is its instance id and the SPIFFE ID it watches with: an instance id is only what
# the sidecar says, so another agent naming it counts (and acknowledges) as a watcher of its own.
_Key = tuple[str, str]


@dataclass(frozen=True, kw_only=True, slots=True)
class Enforcement:
    revision: int
    enforced: int
    expected: int
    took_s: float
    not_acknowledged: tuple[str, ...] = field(default_factory=tuple)


class Acknowledgements:
    def __init__(self, clock: Clock, shared: ControlWatcherStore | None = None) -> None:
        self._clock, self._shared = clock, shared
        self._live: dict[_Key, _Watcher] = {}
        self._progress = asyncio.Event()
        self._changed = asyncio.Event()
        self._replica_id = uuid.uuid4().hex
        self._store_answers = True

    @property
    def live_count(self) -> int:
        return len(self._live)

    def watching(self, instance_id: str, spiffe_id: str) -> None:
        """A watch stream opened for `instance_id` (a restarted sidecar may overlap its old stream)."""
        self._live.setdefault((instance_id, spiffe_id), _Watcher()).streams += 1
        self._changed.set()

    def stopped(self, instance_id: str, spiffe_id: str) -> None:
        watcher = self._live.get((instance_id, spiffe_id))
        if watcher is None:
            return
        watcher.streams -= 1
        if watcher.streams <= 0:
            del self._live[(instance_id, spiffe_id)]
            self._progress.set()
            self._changed.set()

    def acknowledge(self, instance_id: str, revision: int, spiffe_id: str) -> None:
        watcher = self._live.get((instance_id, spiffe_id))
        if watcher is None:
            if any(key[0] == instance_id for key in self._live):
                raise PermissionDenied(f"{spiffe_id} may not acknowledge for {instance_id}: it does not watch as it")
            raise UnknownInstance(instance_id)
        if revision > watcher.acknowledged:
            watcher.acknowledged = revision
            self._progress.set()
            self._changed.set()

    async def share_forever(self) -> None:
        """Publishes this replica's watchers whenever they change and every SHARE_EVERY_S
        (nothing to do without a shared store)."""
        if self._shared is None:
            return
        while True:
            self._changed.clear()
            await self._publish()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), SHARE_EVERY_S)

    async def _publish(self) -> None:
        assert self._shared is not None
        now = self._clock.wall()
        mine = [ControlWatcher(i, s, w.acknowledged) for (i, s), w in sorted(self._live.items())]
        try:
            await self._shared.publish(self._replica_id, mine, now, forget_before=now - 6 * REPLICA_TTL_S)
        except StoreError as exc:
            if self._store_answers:
                log.warning("cannot share this replica's watchers (%s): enforcement counts its own sidecars", exc)
            self._store_answers = False
        else:
            self._store_answers = True

    async def _everywhere(self) -> dict[_Key, int]:
        """Every live watcher with what it acknowledged: this replica's from memory, the others'
        from the store (only this replica's when the store does not answer). Memory is read after
        the store's answer: an acknowledgement that arrives while the store is read is counted now,
        not a poll later (its wake-up is cleared by `wait_for` before it waits again)."""
        if self._shared is None:
            return {key: w.acknowledged for key, w in self._live.items()}
        try:
            shared = await self._shared.live(self._clock.wall() - REPLICA_TTL_S)
        except StoreError:
            shared = []
        found = {key: w.acknowledged for key, w in self._live.items()}
        for w in shared:
            key = (w.instance_id, w.spiffe_id)
            found[key] = max(found.get(key, 0), w.acknowledged)
        return found

    async def wait_for(self, revision: int, started: float, wait_s: float) -> Enforcement:
        """Waits until every live sidecar acknowledged `revision`, at most until `started + wait_s`
        (monotonic). `took_s` counts from `started` to the last acknowledgement seen."""
        deadline = started + wait_s
        acknowledged = await self._everywhere()
        expected = set(acknowledged)
        while True:
            expected &= set(acknowledged)  # a sidecar that left no longer counts
            pending = [i for i in expected if acknowledged[i] < revision]
            remaining = deadline - self._clock.monotonic()
            if not pending or remaining <= 0:
                break
            self._progress.clear()  # no await since `pending` was computed: no wake-up is lost
            with contextlib.suppress(TimeoutError):
                # with other replicas, read theirs again every POLL_S; alone, wait for a change here
                await asyncio.wait_for(
                    self._progress.wait(), remaining if self._shared is None else min(remaining, POLL_S)
                )
            acknowledged = await self._everywhere()
        took = self._clock.monotonic() - started  # woken at the last acknowledgement
        return Enforcement(
            revision=revision,
            enforced=len(expected) - len(pending),
            expected=len(expected),
            took_s=max(took, 0.0),
            not_acknowledged=tuple(sorted(instance_id for instance_id, _ in pending)),
        )
