"""How many failed console logins are tolerated: a brute-force guard on the token form.

Per client address, at most `per_address` failures in a sliding `window_s`; across all
addresses, at most `overall` (a spread-out attack). Past either, every login attempt from that
address (or from anyone) is refused without checking the token until the window moves on,
and the page says when to try again. Operator tokens carry 256 bits, so this is about noise
and the audit log's size more than guessing; it is kept in memory, like the logins.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

from meshwarden.clock import Clock

DEFAULT_WINDOW_S: Final = 60.0
DEFAULT_PER_ADDRESS: Final = 5
DEFAULT_OVERALL: Final = 50
MAX_ADDRESSES: Final = 10_000


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_s: float = 0.0


class FailedLogins:
    def __init__(
        self,
        clock: Clock,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        per_address: int = DEFAULT_PER_ADDRESS,
        overall: int = DEFAULT_OVERALL,
    ) -> None:
        self._clock, self._window_s = clock, window_s
        self._per_address, self._overall = per_address, overall
        self._by_address: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()

    def check(self, address: str) -> Verdict:
        """Whether `address` may try to log in now."""
        now = self._clock.monotonic()
        self._trim(now)
        mine = self._by_address.get(address, deque())
        for failures, limit in ((mine, self._per_address), (self._all, self._overall)):
            if len(failures) >= limit:
                return Verdict(False, max(failures[0] + self._window_s - now, 0.0))
        return Verdict(True)

    def failed(self, address: str) -> None:
        now = self._clock.monotonic()
        if address not in self._by_address and len(self._by_address) >= MAX_ADDRESSES:
            self._trim(now)
        self._by_address.setdefault(address, deque()).append(now)
        self._all.append(now)

    def _trim(self, now: float) -> None:
        oldest = now - self._window_s
        while self._all and self._all[0] <= oldest:
            self._all.popleft()
        for address in list(self._by_address):
            failures = self._by_address[address]
            while failures and failures[0] <= oldest:
                failures.popleft()
            if not failures:
                del self._by_address[address]
