"""Inbound: run each idempotency key once. A repeat of a completed call gets the stored reply
without reaching the agent; a repeat that arrives while the first is still running waits for
it. Keys are per caller SPIFFE ID and capability, so one caller cannot read another's
results. Failed calls are forgotten, so a retry may still succeed.

Results are kept in memory for `ttl_s`, at most `max_entries` of them holding at most
`max_bytes` of results together (least recently used go first; a result can be up to the
payload limit, 4 MiB by default, so a count alone would let the cache grow to gigabytes):
a sidecar restart forgets them, which a retry after a crash must tolerate.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import replace

from meshwarden.clock import Clock
from meshwarden.sidecar.call import Call, Handler, Layer, Reply

Key = tuple[str, str, str]  # caller SPIFFE ID, capability, idempotency key

MAX_ENTRIES = 10_000
MAX_BYTES = 64 * 1024 * 1024  # room for a dozen results at the largest payload limit
_ENTRY_OVERHEAD_BYTES = 200  # the key, the reply's names and ids, the bookkeeping


def _size(key: Key, reply: Reply) -> int:
    return _ENTRY_OVERHEAD_BYTES + sum(map(len, key)) + len(reply.result)


class Idempotency:
    def __init__(
        self, next: Handler, ttl_s: float, clock: Clock, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES
    ) -> None:
        self._next, self._ttl_s, self._clock, self._max = next, ttl_s, clock, max_entries
        self._max_bytes = max_bytes
        self._done: OrderedDict[Key, tuple[float, Reply, int]] = OrderedDict()  # key -> (expires at, reply, size)
        self.held_bytes = 0
        self._running: dict[Key, asyncio.Future[None]] = {}

    async def __call__(self, call: Call) -> Reply:
        if not call.idempotency_key:
            return await self._next(call)
        key = (call.caller.spiffe_id, call.capability, call.idempotency_key)
        while True:
            stored = self._lookup(key)
            if stored is not None:  # a replay consumed nothing: the first run reported the usage
                return replace(stored, usage=None) if stored.usage is not None else stored
            running = self._running.get(key)
            if running is None:
                break
            await asyncio.shield(running)  # then look again: it may have failed, and we run it
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running[key] = finished
        try:
            reply = await self._next(call)
            self._remember(key, reply)
            return reply
        finally:
            del self._running[key]
            finished.set_result(None)

    def _lookup(self, key: Key) -> Reply | None:
        entry = self._done.get(key)
        if entry is None:
            return None
        expires_at, reply, size = entry
        if expires_at <= self._clock.monotonic():
            del self._done[key]
            self.held_bytes -= size
            return None
        self._done.move_to_end(key)
        return reply

    def _remember(self, key: Key, reply: Reply) -> None:
        size = _size(key, reply)
        if size > self._max_bytes:
            return  # could never be held: a repeat runs again, as after the entry expired
        replaced = self._done.pop(key, None)
        if replaced is not None:
            self.held_bytes -= replaced[2]
        self._done[key] = (self._clock.monotonic() + self._ttl_s, reply, size)
        self.held_bytes += size
        while len(self._done) > self._max or self.held_bytes > self._max_bytes:
            _, (_, _, evicted) = self._done.popitem(last=False)
            self.held_bytes -= evicted

    @property
    def entries(self) -> int:
        return len(self._done)


def layer(ttl_s: float, clock: Clock, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> Layer:
    return lambda next: Idempotency(next, ttl_s, clock, max_entries, max_bytes)
