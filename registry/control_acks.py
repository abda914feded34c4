"""Which live sidecars enforce which controls revision, so a write can answer "enforced by
100/100 sidecars in 38 ms".

A sidecar that watches with its instance id is live while its stream is open. After applying
a ControlsUpdate it acknowledges the revision (Controls.AcknowledgeControls, with the same
SVID it watches with). `wait_for` returns once every sidecar live at that moment acknowledged
the revision, or when the wait ends, naming those that had not; a sidecar whose stream closes
meanwhile no longer counts (it receives the current set first when it reconnects).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from meshwarden.clock import Clock
from meshwarden.registry.errors import PermissionDenied, UnknownInstance


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
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._live: dict[_Key, _Watcher] = {}
        self._progress = asyncio.Event()

    @property
    def live_count(self) -> int:
        return len(self._live)

    def watching(self, instance_id: str, spiffe_id: str) -> None:
        """A watch stream opened for `instance_id` (a restarted sidecar may overlap its old stream)."""
        self._live.setdefault((instance_id, spiffe_id), _Watcher()).streams += 1

    def stopped(self, instance_id: str, spiffe_id: str) -> None:
        watcher = self._live.get((instance_id, spiffe_id))
        if watcher is None:
            return
        watcher.streams -= 1
        if watcher.streams <= 0:
            del self._live[(instance_id, spiffe_id)]
            self._progress.set()

    def acknowledge(self, instance_id: str, revision: int, spiffe_id: str) -> None:
        watcher = self._live.get((instance_id, spiffe_id))
        if watcher is None:
            if any(key[0] == instance_id for key in self._live):
                raise PermissionDenied(f"{spiffe_id} may not acknowledge for {instance_id}: it does not watch as it")
            raise UnknownInstance(instance_id)
        if revision > watcher.acknowledged:
            watcher.acknowledged = revision
            self._progress.set()

    async def wait_for(self, revision: int, started: float, wait_s: float) -> Enforcement:
        """Waits until every live sidecar acknowledged `revision`, at most until `started + wait_s`
        (monotonic). `took_s` counts from `started` to the last acknowledgement seen."""
        deadline = started + wait_s
        expected = set(self._live)
        while True:
            expected &= set(self._live)  # a sidecar that left no longer counts
            pending = [i for i in expected if self._live[i].acknowledged < revision]
            remaining = deadline - self._clock.monotonic()
            if not pending or remaining <= 0:
                break
            self._progress.clear()  # no await since `pending` was computed: no wake-up is lost
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except TimeoutError:
                pass
        took = self._clock.monotonic() - started  # woken at the last acknowledgement
        return Enforcement(
            revision=revision,
            enforced=len(expected) - len(pending),
            expected=len(expected),
            took_s=max(took, 0.0),
            not_acknowledged=tuple(sorted(instance_id for instance_id, _ in pending)),
        )
