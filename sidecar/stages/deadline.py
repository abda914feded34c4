"""Hold every call to its deadline: refuse one whose deadline already passed, and stop
waiting the moment it passes. The remaining time is also what the next hop receives."""

from __future__ import annotations

import asyncio

from meshwarden.clock import Clock
from meshwarden.errors import DeadlineExceeded
from meshwarden.sidecar.call import Call, Handler, Layer, Reply


class Deadline:
    def __init__(self, next: Handler, clock: Clock) -> None:
        self._next, self._clock = next, clock

    async def __call__(self, call: Call) -> Reply:
        remaining = call.deadline - self._clock.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded(f"the deadline of the call to {call.capability} passed before it could be sent")
        try:
            async with asyncio.timeout(remaining):
                return await self._next(call)
        except TimeoutError as exc:
            raise DeadlineExceeded(
                f"{call.capability} did not answer within the caller's deadline ({remaining:.3f} s left when sent)",
                instance_id=call.target.instance_id if call.target is not None else "",
            ) from exc


def layer(clock: Clock) -> Layer:
    return lambda next: Deadline(next, clock)
