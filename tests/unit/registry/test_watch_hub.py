"""registry.watch_hub: fan-out, and cutting off a slow watcher without blocking anyone."""

from __future__ import annotations

import asyncio

import pytest

from meshwarden.registry.model import Removed
from meshwarden.registry.watch_hub import WatchEnded, WatchHub


def _event(revision: int) -> Removed:
    return Removed(revision=revision, instance_id=f"i{revision}", reason="deregistered")


async def test_every_watcher_gets_every_event_in_order() -> None:
    hub = WatchHub(max_queued_per_watcher=10)
    first, second = hub.subscribe(), hub.subscribe()
    for revision in (1, 2, 3):
        hub.publish(_event(revision))
    assert [(await first.next()).revision for _ in range(3)] == [1, 2, 3]
    assert [(await second.next()).revision for _ in range(3)] == [1, 2, 3]


async def test_a_watcher_only_sees_events_published_after_it_subscribed() -> None:
    hub = WatchHub(max_queued_per_watcher=10)
    hub.publish(_event(1))
    late = hub.subscribe()
    hub.publish(_event(2))
    assert (await late.next()).revision == 2


async def test_a_slow_watcher_is_cut_off_and_the_others_keep_going() -> None:
    hub = WatchHub(max_queued_per_watcher=2)
    slow, fast = hub.subscribe(), hub.subscribe()
    hub.publish(_event(1))
    assert (await fast.next()).revision == 1
    hub.publish(_event(2))
    assert (await fast.next()).revision == 2
    hub.publish(_event(3))  # slow now has 1, 2 queued: full, so it is cut off
    assert (await fast.next()).revision == 3
    assert slow.ended and hub.watcher_count == 1
    with pytest.raises(WatchEnded, match="fell behind by 2 events.*since_revision"):
        await slow.next()


async def test_close_ends_every_watcher_and_later_ones() -> None:
    hub = WatchHub(max_queued_per_watcher=5)
    waiting = hub.subscribe()
    pending = asyncio.create_task(waiting.next())
    await asyncio.sleep(0)
    hub.close()
    with pytest.raises(WatchEnded, match="shutting down"):
        await asyncio.wait_for(pending, 1.0)
    with pytest.raises(WatchEnded, match="shutting down"):
        await hub.subscribe().next()
    hub.publish(_event(1))  # nobody is left to feed; must not fail
    assert hub.watcher_count == 0


async def test_unsubscribed_watchers_get_nothing_more() -> None:
    hub = WatchHub(max_queued_per_watcher=1)
    gone = hub.subscribe()
    hub.unsubscribe(gone)
    hub.publish(_event(1))
    hub.publish(_event(2))  # would overflow `gone` if it were still subscribed
    assert not gone.ended and hub.watcher_count == 0


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WatchHub(max_queued_per_watcher=0)
