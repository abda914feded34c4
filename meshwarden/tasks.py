"""Background loops that must outlive their own bugs: a loop that raises unexpectedly is
logged with its traceback and restarted after a pause that doubles while it keeps failing
(1 s up to 30 s, back to 1 s once it ran a minute without failing), or, when it was started
with `on_failure="stop"`, stops the process through the supervisor's `fatal` event. A loop
that returns is logged too: none of ours is meant to end by itself, so nothing dies silently.

`Supervisor` holds a process's loops together so start-up and shutdown can stop them all at
once (an `AsyncExitStack` callback), whatever else failed.

`to_completion` is for work that must finish once started (a write and its publication) even
when its caller is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Loop = Callable[[], Awaitable[None]]
OnFailure = Literal["restart", "stop"]


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Pause before a restart: `first_s`, doubled per failure in a row up to `max_s`; a run
    longer than `healthy_after_s` counts as healthy and resets it."""

    first_s: float = 1.0
    max_s: float = 30.0
    healthy_after_s: float = 60.0


DEFAULT_BACKOFF = Backoff()


def supervise(
    name: str,
    loop: Loop,
    restart_after_s: float | None = None,
    *,
    backoff: Backoff = DEFAULT_BACKOFF,
    on_failure: OnFailure = "restart",
    fatal: asyncio.Event | None = None,
) -> asyncio.Task[None]:
    """Runs `loop` as a task named `name`, restarting it with backoff when it raises (or, with
    `on_failure="stop"`, setting `fatal`). `restart_after_s` fixes the first pause."""
    if restart_after_s is not None:
        backoff = Backoff(first_s=restart_after_s, max_s=max(restart_after_s, backoff.max_s))
    if on_failure == "stop" and fatal is None:
        raise ValueError(f"task {name}: on_failure='stop' needs the event that stops the process (fatal=)")
    return asyncio.create_task(_run(name, loop, backoff, on_failure, fatal), name=name)


async def _run(name: str, loop: Loop, backoff: Backoff, on_failure: OnFailure, fatal: asyncio.Event | None) -> None:
    pause = backoff.first_s
    while True:
        started = time.monotonic()
        try:
            await loop()
            log.warning("background task %s ended by itself; it is not restarted", name)
            return
        except asyncio.CancelledError:
            raise
        except Exception:  # the task supervisor: log everything, then restart or stop the process
            if on_failure == "stop" and fatal is not None:
                log.exception("background task %s failed; stopping the process", name)
                fatal.set()
                return
            if time.monotonic() - started >= backoff.healthy_after_s:
                pause = backoff.first_s
            log.exception("background task %s failed; restarting in %.1f s", name, pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, backoff.max_s)


def spawn(coroutine: Coroutine[object, object, None], name: str) -> asyncio.Task[None]:
    """A one-shot task (a write, an acknowledgement) whose failure is logged with its traceback
    when it ends, rather than only when it is garbage-collected, if ever."""
    task = asyncio.get_running_loop().create_task(coroutine, name=name)
    task.add_done_callback(_log_failure)
    return task


def _log_failure(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    failure = task.exception()
    if failure is not None:
        log.error("task %s failed", task.get_name(), exc_info=failure)


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Supervisor:
    """The background loops of one process. `fatal` is set when a loop started with
    `on_failure="stop"` fails: the process waits on it beside its stop signals."""

    def __init__(self, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self._backoff = backoff
        self._tasks: list[asyncio.Task[None]] = []
        self.fatal = asyncio.Event()

    def start(self, name: str, loop: Loop, *, on_failure: OnFailure = "restart") -> asyncio.Task[None]:
        task = supervise(name, loop, backoff=self._backoff, on_failure=on_failure, fatal=self.fatal)
        self._tasks.append(task)
        return task

    @property
    def names(self) -> list[str]:
        return [task.get_name() for task in self._tasks if not task.done()]

    async def stop(self) -> None:
        """Cancels every loop and waits until each has ended."""
        tasks, self._tasks = self._tasks, []
        await cancel_all(tasks)


async def to_completion(work: Coroutine[Any, Any, T]) -> T:
    """Awaits `work`, which runs to its end even if the caller is cancelled meanwhile (a
    change committed to a store is then still published to those who follow it)."""
    return await asyncio.shield(asyncio.ensure_future(work))
