"""The rules every Consul blocking-query loop must follow, from Consul's "Blocking Queries"
page (https://developer.hashicorp.com/consul/api-docs/features/blocking, "Implementation
Details"), kept apart from the loops so they are tested on their own with a fake clock.

- An index lower than the previous one means the state was reset (a snapshot restore, a
  finer-grained index after an upgrade): start over from 0, or updates may be missed forever.
- An index below 1 must never be sent back: it does not block, and the loop would spin.
- Rate-limit the loop with a small token bucket, so the happy path never waits but a result
  that churns degrades into polling instead of a busy loop.
- Errors back off exponentially with jitter, so many sidecars do not retry in step.
"""

from __future__ import annotations

import random

from meshwarden.clock import Clock


def next_index(previous: int, returned: int) -> int:
    """The index to send on the next blocking request, given the one Consul just returned."""
    if previous > 0 and returned < previous:
        return 0  # went backwards: restart the loop with a non-blocking read
    return max(returned, 1)  # after a first read (or a reset), never less than 1


class RateLimit:
    """A token bucket: `burst` requests at once, then one per `interval_s`."""

    def __init__(self, clock: Clock, *, burst: int = 5, interval_s: float = 1.0) -> None:
        self._clock, self._burst, self._interval_s = clock, burst, interval_s
        self._tokens = float(burst)
        self._last = clock.monotonic()

    def delay_s(self) -> float:
        """Takes a token: how long to wait before the next request (0 while the bucket has some)."""
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) / self._interval_s)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens * self._interval_s


class Backoff:
    """Exponential backoff with jitter (0.5x to 1.5x), reset by the first success."""

    def __init__(self, rng: random.Random, *, first_s: float = 0.2, max_s: float = 10.0) -> None:
        self._rng, self._first_s, self._max_s = rng, first_s, max_s
        self._next_s = first_s

    def next_delay_s(self) -> float:
        delay = self._next_s * (0.5 + self._rng.random())
        self._next_s = min(self._next_s * 2, self._max_s)
        return delay

    def reset(self) -> None:
        self._next_s = self._first_s
