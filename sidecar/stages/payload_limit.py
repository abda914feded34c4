"""Refuse oversized payloads before any work is spent on them."""

from __future__ import annotations

from meshwarden.errors import PayloadTooLarge
from meshwarden.sidecar.call import Call, Handler, Layer, Reply


class PayloadLimit:
    def __init__(self, next: Handler, limit_bytes: int) -> None:
        self._next, self._limit = next, limit_bytes

    async def __call__(self, call: Call) -> Reply:
        if len(call.payload) > self._limit:
            raise PayloadTooLarge(len(call.payload), self._limit, call.capability)
        return await self._next(call)


def layer(limit_bytes: int) -> Layer:
    return lambda next: PayloadLimit(next, limit_bytes)
