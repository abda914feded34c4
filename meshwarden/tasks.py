"""Background loops that must outlive their own bugs: a loop that raises unexpectedly is
logged with its traceback and restarted after a pause, never silently lost. And work that
must finish once started (a write and its publication) even when its caller is cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


def supervise(name: str, loop: Callable[[], Awaitable[None]], restart_after_s: float = 1.0) -> asyncio.Task[None]:
    async def run() -> None:
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # the task supervisor: log everything, keep the process alive
                log.exception("background task %s failed; restarting in %.1f s", name, restart_after_s)
                await asyncio.sleep(restart_after_s)

    return asyncio.create_task(run(), name=name)


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def to_completion(work: Coroutine[Any, Any, T]) -> T:
    """Awaits `work`, which runs to its end even if the caller is cancelled meanwhile (a
    change committed to a store is then still published to those who follow it)."""
    return await asyncio.shield(asyncio.ensure_future(work))
