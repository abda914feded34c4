"""Work that must run on one replica at a time: lease expiry, kill-switch expiry, budget slice
expiry, task lease expiry, receipt retention.

With one registry process (SQLite) it simply runs. With several replicas on PostgreSQL it
runs only while this replica holds the store's leadership (an advisory lock,
registry.store.postgres.leadership): when that replica dies its lock is released and another
replica takes the work over within seconds; a replica that loses the lock stops the work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from meshwarden import tasks
from meshwarden.registry.store import Leadership

log = logging.getLogger(__name__)

Work = tuple[str, Callable[[], Awaitable[None]]]


async def run_once_in_mesh(
    works: Sequence[Work], leadership: Leadership | None, on_lead: Callable[[], Awaitable[None]]
) -> None:
    """Runs `works` (name, coroutine function) until cancelled; with `leadership`, only while
    holding it, calling `on_lead` first each time it is taken."""
    if leadership is None:
        await on_lead()
        await _run_until(works, None)
        return
    try:
        while True:
            await leadership.acquire()
            log.info("this replica now runs the work done once in the mesh: %s", ", ".join(n for n, _ in works))
            await on_lead()
            await _run_until(works, leadership)
    finally:
        await leadership.release()


async def _run_until(works: Sequence[Work], leadership: Leadership | None) -> None:
    running = [tasks.supervise(name, work) for name, work in works]
    try:
        if leadership is None:
            await asyncio.get_running_loop().create_future()  # until cancelled
        else:
            await leadership.lost()
    finally:
        await tasks.cancel_all(running)
