"""registry.watch_hub: fan-out, coalescing catalog changes, and cutting off a slow watcher
without blocking anyone."""

from __future__ import annotations

import asyncio

import pytest

from meshwarden.registry.controls import ControlsChanged, ControlsSet
from meshwarden.registry.model import Removed
from meshwarden.registry.watch_hub import MAX_BATCH_CHANGES, CatalogBatch, WatchEnded, WatchHub, WatchItem


def _event(revision: int) -> Removed:
    return Removed(revision=revision, instance_id=f"i{revision}", reason="deregistered")


def _no_controls() -> ControlsSet:
    return ControlsSet(revision=1, kill_switches=(), isolations=())


def _revisions(item: WatchItem) -> list[int]:
    assert isinstance(item, CatalogBatch)
    return [change.revision for change in item.changes]


async def test_changes_of_one_turn_reach_every_watcher_as_one_shared_batch_in_order() -> None:
    hub = WatchHub(max_queued_per_watcher=10)
    first, second = hub.subscribe(), hub.subscribe()
    for revision in (1, 2, 3):
        hub.publish(_event(revision))
    got_first, got_second = await first.next(), await second.next()
    assert _revisions(got_first) == [1, 2, 3] and got_second is got_first  # one object, encoded once


async def test_changes_within_the_window_share_a_batch_and_later_ones_do_not() -> None:
    hub = WatchHub(max_queued_per_watcher=10, coalesce_s=0.05)
    watcher = hub.subscribe()
    hub.publish(_event(1))
    await asyncio.sleep(0.01)
    hub.publish(_event(2))
    assert _revisions(await watcher.next()) == [1, 2]
    hub.publish(_event(3))
    assert _revisions(await watcher.next()) == [3]


async def test_a_burst_is_cut_into_batches_of_at_most_the_maximum() -> None:
    hub = WatchHub(max_queued_per_watcher=10)
    watcher = hub.subscribe()
    for revision in range(1, MAX_BATCH_CHANGES + 2):
        hub.publish(_event(revision))
    sizes = [len(item.changes) for item in await watcher.pending() if isinstance(item, CatalogBatch)]
    assert sizes == [MAX_BATCH_CHANGES, 1]


async def test_other_events_flush_the_changes_before_them_and_keep_their_order() -> None:
    hub = WatchHub(max_queued_per_watcher=10, coalesce_s=1.0)
    watcher = hub.subscribe()
    hub.publish(_event(1))
    hub.publish(ControlsChanged(controls=_no_controls()))  # not held for the window: a kill switch
    items = await asyncio.wait_for(watcher.pending(), 0.5)
    assert _revisions(items[0]) == [1] and isinstance(items[1], ControlsChanged) and len(items) == 2


async def test_a_watcher_only_sees_events_published_after_it_subscribed() -> None:
    hub = WatchHub(max_queued_per_watcher=10)
    early = hub.subscribe()
    hub.publish(_event(1))
    late = hub.subscribe()  # change 1 goes to the watchers before it, not in a batch with 2
    hub.publish(_event(2))
    assert _revisions(await late.next()) == [2]
    assert [_revisions(item) for item in await early.pending()] == [[1], [2]]


async def test_a_slow_watcher_is_cut_off_and_the_others_keep_going() -> None:
    hub = WatchHub(max_queued_per_watcher=2)
    slow, fast = hub.subscribe(), hub.subscribe()
    hub.publish(_event(1))
    assert _revisions(await fast.next()) == [1]
    hub.publish(_event(2))
    assert _revisions(await fast.next()) == [2]
    hub.publish(_event(3))  # slow now has two batches queued: full, so it is cut off
    assert _revisions(await fast.next()) == [3]
    assert slow.ended and hub.watcher_count == 1
    with pytest.raises(WatchEnded, match="fell behind by 2 messages.*since_revision"):
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
    hub.flush()
    hub.publish(_event(2))
    hub.flush()  # would overflow `gone` if it were still subscribed
    assert not gone.ended and hub.watcher_count == 0


def test_queue_size_must_be_positive_and_the_window_not_negative() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WatchHub(max_queued_per_watcher=0)
    with pytest.raises(ValueError, match="0 or more"):
        WatchHub(max_queued_per_watcher=1, coalesce_s=-0.1)
