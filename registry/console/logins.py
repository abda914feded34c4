"""Who is logged in to the web console: one record per browser login, kept in memory.

A login is a random session id (the cookie's value: 256 bits, so it cannot be guessed) bound
to the role of the credential that opened it, the credential's identity (the audit log's
actor), the name the person typed (a claim, kept beside the actor as the CLI's $USER is) and
a CSRF token that every write must carry. A login ends after `idle_s` without a request from
its browser, after `MAX_AGE_S` in any case, on logout, and when the registry restarts (memory
only: after a restart everyone logs in again, which is cheap and leaves no session on disk).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from typing import Final

from meshwarden.clock import Clock
from meshwarden.registry.operators import OPERATOR

MAX_AGE_S: Final = 12 * 3600.0
MAX_LOGINS: Final = 1000  # beyond this, the least recently used login ends first
MAX_USER_CHARS: Final = 64


@dataclass(slots=True)
class Login:
    session_id: str
    role: str  # registry.operators.OPERATOR or VIEWER
    actor: str  # the credential's identity, e.g. "operator:sha256:…"
    user: str  # what the person typed as their name: a claim
    csrf_token: str
    opened_at: float  # monotonic seconds
    seen_at: float
    notices: list[str] = field(default_factory=list)  # said once on the next page (a write's result)

    @property
    def may_act(self) -> bool:
        return self.role == OPERATOR

    def carries(self, csrf_token: str) -> bool:
        return hmac.compare_digest(csrf_token.encode(), self.csrf_token.encode())


class Logins:
    def __init__(self, clock: Clock, *, idle_s: float) -> None:
        self._clock, self._idle_s = clock, idle_s
        self._by_id: dict[str, Login] = {}

    def open(self, role: str, actor: str, user: str) -> Login:
        self._forget_ended()
        if len(self._by_id) >= MAX_LOGINS:
            oldest = min(self._by_id.values(), key=lambda login: login.seen_at)
            del self._by_id[oldest.session_id]
        now = self._clock.monotonic()
        login = Login(
            session_id=secrets.token_urlsafe(32),
            role=role,
            actor=actor,
            user=user.strip()[:MAX_USER_CHARS],
            csrf_token=secrets.token_urlsafe(32),
            opened_at=now,
            seen_at=now,
        )
        self._by_id[login.session_id] = login
        return login

    def find(self, session_id: str) -> Login | None:
        """The live login of `session_id` (now seen again), or None: unknown, or ended (then forgotten)."""
        login = self._by_id.get(session_id)
        if login is None:
            return None
        now = self._clock.monotonic()
        if self._ended(login, now):
            del self._by_id[session_id]
            return None
        login.seen_at = now
        return login

    def close(self, session_id: str) -> None:
        self._by_id.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._by_id)

    def _ended(self, login: Login, now: float) -> bool:
        return now - login.seen_at > self._idle_s or now - login.opened_at > MAX_AGE_S

    def _forget_ended(self) -> None:
        now = self._clock.monotonic()
        for session_id in [s for s, login in self._by_id.items() if self._ended(login, now)]:
            del self._by_id[session_id]
