"""Fans catalog events out to watchers without letting a slow one hold anybody up.

Each watcher owns a bounded asyncio queue. `publish` never waits: when a watcher's queue is
full, the watcher is cut off (its queue is emptied and it is told why). It reconnects with the
last revision it applied and the registry replays what it missed from the event log, so
cutting it off loses nothing, whereas waiting for it would stall every registration.

Catalog changes are coalesced: those published within a window of the first (as long as the
number of watchers asks, FANOUT_MESSAGES_PER_S, and at least `coalesce_s`) go to every watcher
as one `CatalogBatch` (one queue entry, one object shared by all watchers, so its
wire form is made once: registry.api.watch), and a watcher sends what piled up in its queue
as one message. A change per watcher per message was 1,000 messages per registration with
1,000 watchers; the registry could not make more than a few hundred a second. Any other event
(bundle, routes, controls) first flushes the changes before it, so every watcher still sees
everything in the order it was published; controls are never delayed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Final

from meshwarden.registry.bundles import BundlePublished
from meshwarden.registry.controls import ControlsChanged
from meshwarden.registry.model import CatalogEvent
from meshwarden.registry.routes import RouteChanged

# What is published: catalog changes, new policy bundle revisions, route changes, and the
# controls (kill switches, isolations) in force.
HubEvent = CatalogEvent | BundlePublished | RouteChanged | ControlsChanged

# A coalesced batch holds at most this many catalog changes (a replica catching up publishes
# thousands at once; one batch's wire form is made on the loop).
MAX_BATCH_CHANGES: Final = 256
# Catalog messages per second to all watchers together that the window allows: it is
# watchers / this (1,000 watchers: 0.2 s; a mesh of ten: 2 ms, so a new instance reaches the
# other sidecars about as soon as before), and at least `coalesce_s`. Sending one message on a
# stream costs grpc.aio about 50 to 100 us of the loop here, so this keeps the fan-out near a
# quarter to half a core however fast changes come.
FANOUT_MESSAGES_PER_S: Final = 5_000

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False, slots=True, weakref_slot=True)
class CatalogBatch:
    """Catalog changes in revision order, shared by every watcher (compared by identity, so
    registry.api.watch can keep its encoding per batch)."""

    changes: tuple[CatalogEvent, ...]

    @property
    def first_revision(self) -> int:
        return self.changes[0].revision

    @property
    def revision(self) -> int:
        return self.changes[-1].revision


# What a watcher receives.
WatchItem = CatalogBatch | BundlePublished | RouteChanged | ControlsChanged


class WatchEnded(Exception):
    """The hub stopped feeding this watcher; the message says why and what the client should do."""


@dataclass(frozen=True, slots=True)
class _Ended:
    reason: str


_SHUTTING_DOWN: Final = "the registry is shutting down; reconnect with since_revision set to the last revision applied"


class Subscription:
    """One watcher's feed. Get events with `await next()`; leave with `WatchHub.unsubscribe`."""

    def __init__(self, max_queued: int) -> None:
        self._queue: asyncio.Queue[WatchItem | _Ended] = asyncio.Queue(max_queued + 1)
        self._max_queued = max_queued
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    async def next(self) -> WatchItem:
        """The next item; raises WatchEnded once the hub cut this watcher off or shut down."""
        item = await self._queue.get()
        if isinstance(item, _Ended):
            raise WatchEnded(item.reason)
        return item

    async def pending(self) -> list[WatchItem]:
        """Every item queued now (waiting for one if none is): what piled up since the last
        call, to be sent together. Raises WatchEnded as `next` does, once nothing precedes it."""
        items = [await self.next()]
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Ended):
                self._queue.put_nowait(item)  # raised by the next call, after these are sent
                break
            items.append(item)
        return items

    def _offer(self, event: WatchItem) -> bool:
        """Queues `event`; False (and the watcher ended) when its queue was full."""
        if self._ended:
            return True
        if self._queue.qsize() >= self._max_queued:
            self._end(
                f"watcher fell behind by {self._max_queued} messages and was disconnected; "
                f"reconnect with since_revision set to the last revision applied"
            )
            return False
        self._queue.put_nowait(event)
        return True

    def _end(self, reason: str) -> None:
        """Drops what is queued and leaves only the reason: the watcher resumes from the log."""
        self._ended = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_Ended(reason))


class WatchHub:
    def __init__(self, max_queued_per_watcher: int, *, coalesce_s: float = 0.0) -> None:
        """`coalesce_s`: how long catalog changes wait at least for others to share their
        message (0: as long as the number of watchers asks, FANOUT_MESSAGES_PER_S)."""
        if max_queued_per_watcher < 1:
            raise ValueError(f"max_queued_per_watcher must be at least 1, got {max_queued_per_watcher}")
        if coalesce_s < 0:
            raise ValueError(f"coalesce_s must be 0 or more, got {coalesce_s}")
        self._max_queued, self._coalesce_s = max_queued_per_watcher, coalesce_s
        self._subscriptions: set[Subscription] = set()
        self._closed = False
        self._changes: list[CatalogEvent] = []  # published, not yet offered to the watchers
        self._flush_at: asyncio.TimerHandle | asyncio.Handle | None = None
        # Events published and watchers cut off since start, by event type (read by /metrics).
        self.published: Counter[str] = Counter()
        self.disconnected_slow = 0

    @property
    def watcher_count(self) -> int:
        return len(self._subscriptions)

    def subscribe(self) -> Subscription:
        """A new feed of every event published from now on."""
        self.flush()  # what was published before goes to the watchers before this one
        subscription = Subscription(self._max_queued)
        if self._closed:
            subscription._end(_SHUTTING_DOWN)
        else:
            self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, event: HubEvent) -> None:
        """Queues `event` for every watcher (a catalog change within `coalesce_s`), cutting off
        those whose queue is full. Never blocks."""
        self.published[type(event).__name__] += 1
        if isinstance(event, (BundlePublished, RouteChanged, ControlsChanged)):
            self.flush()
            self._offer(event)
            return
        self._changes.append(event)
        if self._flush_at is None:
            loop, window_s = asyncio.get_running_loop(), self.window_s
            self._flush_at = loop.call_later(window_s, self.flush) if window_s else loop.call_soon(self.flush)

    @property
    def window_s(self) -> float:
        """How long a catalog change waits for others now (see FANOUT_MESSAGES_PER_S)."""
        return max(self._coalesce_s, len(self._subscriptions) / FANOUT_MESSAGES_PER_S)

    def flush(self) -> None:
        """Offers the catalog changes published so far to every watcher now."""
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        changes, self._changes = self._changes, []
        for start in range(0, len(changes), MAX_BATCH_CHANGES):
            self._offer(CatalogBatch(tuple(changes[start : start + MAX_BATCH_CHANGES])))

    def _offer(self, event: WatchItem) -> None:
        for subscription in list(self._subscriptions):
            if not subscription._offer(event):
                self._subscriptions.discard(subscription)
                self.disconnected_slow += 1
                if isinstance(event, BundlePublished):
                    at = f"bundle revision {event.bundle.revision}"
                elif isinstance(event, RouteChanged):
                    at = f"the route change of {event.route.capability}"
                elif isinstance(event, ControlsChanged):
                    at = f"controls revision {event.controls.revision}"
                else:
                    at = f"revision {event.revision}"
                log.warning("disconnected a watcher that fell behind at %s", at)

    def disconnect_all(self, reason: str) -> None:
        """Ends every feed now (they resume by revision); later subscriptions are served."""
        self._changes.clear()  # in the store: the watchers resume from it
        for subscription in self._subscriptions:
            subscription._end(reason)
        self._subscriptions.clear()

    def close(self) -> None:
        """Ends every feed (shutdown); later subscriptions end at once."""
        self._closed = True
        self._changes.clear()
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        for subscription in self._subscriptions:
            subscription._end(_SHUTTING_DOWN)
        self._subscriptions.clear()
