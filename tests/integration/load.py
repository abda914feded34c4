"""Calls in a loop from a few concurrent callers, for as long as a chaos test needs load."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import meshwarden
from meshwarden import errors


@dataclass
class SteadyLoad:
    client: meshwarden.Client
    capability: str
    payload: Any = field(default_factory=dict)
    workers: int = 3
    invoke_options: dict[str, Any] = field(default_factory=dict)
    results: list[meshwarden.Result] = field(default_factory=list)
    failures: list[errors.MeshError] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def __aenter__(self) -> SteadyLoad:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _worker(self) -> None:
        while True:
            try:
                self.results.append(
                    await self.client.invoke(self.capability, self.payload, timeout=5, **self.invoke_options)
                )
            except errors.MeshError as err:
                self.failures.append(err)
            await asyncio.sleep(0.005)

    async def wait_for(self, calls: int) -> None:
        """Until `calls` more calls have completed (succeeded or failed)."""
        target = len(self.results) + len(self.failures) + calls
        while len(self.results) + len(self.failures) < target:
            await asyncio.sleep(0.01)
