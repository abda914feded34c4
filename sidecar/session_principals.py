"""Who each session was started for, as this sidecar learned it: the first principal it sees
for a session id, kept (bounded, with a time to live) so later calls of the session carry the
same one and an agent below the entry point cannot change it (sidecar.stages.session_principal).

First wins: from the local agent where the session enters the mesh (InvokeRequest.on_behalf_of
or the gateways' x-meshwarden-on-behalf-of), or from the calling sidecar's envelope (PeerCall)
when a call of the session arrives. A sidecar that forgets a session (restart, eviction) can be
told another principal by its agent; the registry keeps the session's first receipt's and flags
the others (registry.session_principal), so the forgery shows. The session's free labels (meshwarden.session_labels) are kept the same
way, first wins, except that later ones are ignored rather than refused.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Generic, TypeVar

from meshwarden.session_labels import Labels

DEFAULT_MAX_SESSIONS: Final = 10_000
DEFAULT_TTL_S: Final = 3600.0


V = TypeVar("V", str, Labels)


class FirstPerSession(Generic[V]):
    """The first value learned for each session id ("" or () when none), bounded, with a TTL."""

    def __init__(
        self,
        empty: V,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        ttl_s: float = DEFAULT_TTL_S,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._empty: V = empty
        self._max, self._ttl_s, self._now = max_sessions, ttl_s, now
        self._known: OrderedDict[str, tuple[V, float]] = OrderedDict()

    def get(self, session_id: str) -> V:
        """What `session_id` was started with, empty when this sidecar knows nothing of it."""
        entry = self._known.get(session_id)
        if entry is None:
            return self._empty
        principal, expires_at = entry
        if expires_at <= self._now():
            del self._known[session_id]
            return self._empty
        self._known[session_id] = (principal, self._now() + self._ttl_s)  # a live session stays known
        self._known.move_to_end(session_id)
        return principal

    def learn(self, session_id: str, principal: V) -> V:
        """Keeps `principal` for `session_id` unless one is known already; returns the one kept."""
        known = self.get(session_id)
        if known or not session_id or not principal:
            return known
        self._known[session_id] = (principal, self._now() + self._ttl_s)
        while len(self._known) > self._max:
            self._known.popitem(last=False)
        return principal

    def __len__(self) -> int:
        return len(self._known)


class SessionPrincipals(FirstPerSession[str]):
    """Who each session was started for."""

    def __init__(
        self,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        ttl_s: float = DEFAULT_TTL_S,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("", max_sessions, ttl_s, now)


class SessionLabels(FirstPerSession[Labels]):
    """The free labels each session was started with (meshwarden.session_labels)."""

    def __init__(
        self,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        ttl_s: float = DEFAULT_TTL_S,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__((), max_sessions, ttl_s, now)
