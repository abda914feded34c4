"""Fans catalog events out to watchers without letting a slow one hold anybody up.

Each watcher owns a bounded asyncio queue. `publish` never waits: when a watcher's queue is
full, the watcher is cut off (its queue is emptied and it is told why). It reconnects with the
last revision it applied and the registry replays what it missed from the event log, so
cutting it off loses nothing, whereas waiting for it would stall every registration.
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

# What watchers receive: catalog changes, new policy bundle revisions, route changes, and
# the controls (kill switches, isolations) in force.
HubEvent = CatalogEvent | BundlePublished | RouteChanged | ControlsChanged

log = logging.getLogger(__name__)


class WatchEnded(Exception):
    """The hub stopped feeding this watcher; the message says why and what the client should do."""


@dataclass(frozen=True, slots=True)
class _Ended:
    reason: str


_SHUTTING_DOWN: Final = "the registry is shutting down; reconnect with since_revision set to the last revision applied"


class Subscription:
    """One watcher's feed. Get events with `await next()`; leave with `WatchHub.unsubscribe`."""

    def __init__(self, max_queued: int) -> None:
        self._queue: asyncio.Queue[HubEvent | _Ended] = asyncio.Queue(max_queued + 1)
        self._max_queued = max_queued
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    async def next(self) -> HubEvent:
        """The next event; raises WatchEnded once the hub cut this watcher off or shut down."""
        item = await self._queue.get()
        if isinstance(item, _Ended):
            raise WatchEnded(item.reason)
        return item

    def _offer(self, event: HubEvent) -> bool:
        """Queues `event`; False (and the watcher ended) when its queue was full."""
        if self._ended:
            return True
        if self._queue.qsize() >= self._max_queued:
            self._end(
                f"watcher fell behind by {self._max_queued} events and was disconnected; "
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
    def __init__(self, max_queued_per_watcher: int) -> None:
        if max_queued_per_watcher < 1:
            raise ValueError(f"max_queued_per_watcher must be at least 1, got {max_queued_per_watcher}")
        self._max_queued = max_queued_per_watcher
        self._subscriptions: set[Subscription] = set()
        self._closed = False
        # Events published and watchers cut off since start, by event type (read by /metrics).
        self.published: Counter[str] = Counter()
        self.disconnected_slow = 0

    @property
    def watcher_count(self) -> int:
        return len(self._subscriptions)

    def subscribe(self) -> Subscription:
        """A new feed of every event published from now on."""
        subscription = Subscription(self._max_queued)
        if self._closed:
            subscription._end(_SHUTTING_DOWN)
        else:
            self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, event: HubEvent) -> None:
        """Queues `event` for every watcher, cutting off those whose queue is full. Never blocks."""
        self.published[type(event).__name__] += 1
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
        for subscription in self._subscriptions:
            subscription._end(reason)
        self._subscriptions.clear()

    def close(self) -> None:
        """Ends every feed (shutdown); later subscriptions end at once."""
        self._closed = True
        for subscription in self._subscriptions:
            subscription._end(_SHUTTING_DOWN)
        self._subscriptions.clear()
