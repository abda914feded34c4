"""One-time join tokens: how an operator lets exactly one sidecar become agent X.

`meshwarden identity token create --agent X` asks the registry for a token; the registry
stores only the SHA-256 of its secret, with the agent it is for and its expiry, in its
JoinTokenStore (registry.store). A sidecar enrols with it once: consuming a token
checks, in this order, that it is a token of this registry (the CA fingerprint it carries),
that its id is known, that its secret matches (constant-time), that it is unused and
unexpired, and that it was made for the agent asked for; then it marks it used, only if it
is still unused (so two enrolments racing for one token cannot both win). A token that fails any check is not consumed, so a typo does not burn it.
Used and expired tokens are kept a week for the record, then deleted when a token is made.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from typing import Final

from meshwarden.clock import Clock, iso_utc
from meshwarden.identity import join_token
from meshwarden.registry.errors import InvalidInput, PermissionDenied
from meshwarden.registry.store import JoinTokenStore
from meshwarden.registry.store.records import JoinTokenRecord
from meshwarden.registry.validation import validate_agent_name

log = logging.getLogger(__name__)

DEFAULT_TTL_S: Final = 3600
MIN_TTL_S: Final = 60
MAX_TTL_S: Final = 7 * 24 * 3600
KEPT_AFTER_EXPIRY_S: Final = 7 * 24 * 3600


class JoinTokenRefused(PermissionDenied):
    """The join token cannot be used for this enrolment; the message says why and what to do."""


@dataclass(frozen=True)
class CreatedToken:
    text: str = field(repr=False)  # the secret token; shown once, to the operator who asked
    token_id: str
    agent: str
    expires_at: float


class JoinTokens:
    def __init__(self, store: JoinTokenStore, clock: Clock, *, ca_fingerprint: str) -> None:
        self._store, self._clock, self._ca_fingerprint = store, clock, ca_fingerprint

    async def create(
        self, agent: str, ttl_s: int = DEFAULT_TTL_S, *, created_by: str = "", claimed_user: str = ""
    ) -> CreatedToken:
        """A new token for `agent`; `created_by` is the operator credential asking (kept with the
        token, so the enrolment that uses it can say who let the agent in)."""
        validate_agent_name(agent, "agent")
        if not MIN_TTL_S <= ttl_s <= MAX_TTL_S:
            raise InvalidInput("ttl_s", f"must be from {MIN_TTL_S} s to {MAX_TTL_S} s (7 days), got {ttl_s}")
        token = join_token.make(self._ca_fingerprint)
        now = self._clock.wall()
        record = JoinTokenRecord(
            token_id=token.token_id,
            secret_sha256=_digest(token.secret),
            agent=agent,
            created_at=now,
            expires_at=now + ttl_s,
            created_by=created_by,
            created_by_claim=claimed_user,
        )
        await self._store.add(record, forget_expired_before=now - KEPT_AFTER_EXPIRY_S)
        log.info("created join token %s for agent %s, valid until %s", token.token_id, agent, iso_utc(now + ttl_s))
        return CreatedToken(join_token.render(token), token.token_id, agent, now + ttl_s)

    async def consume(self, text: str, agent: str) -> JoinTokenRecord:
        """Marks the token used for enrolling `agent`; returns it as stored (who made it
        included). Raises JoinTokenRefused."""
        try:
            token = join_token.parse(text)
        except join_token.JoinTokenError as exc:
            raise JoinTokenRefused(str(exc)) from None
        if token.ca_pin != self._ca_fingerprint:
            raise JoinTokenRefused(
                f"join token {token.token_id} was made by a registry with CA {token.ca_pin}, not by this one "
                f"({self._ca_fingerprint}); make a token with this registry"
            )
        stored = await self._store.get(token.token_id)
        if stored is None or not hmac.compare_digest(stored.secret_sha256, _digest(token.secret)):
            raise JoinTokenRefused(
                f"join token {token.token_id} is unknown to this registry or its secret does not match; "
                f"make a new one with: meshwarden identity token create --agent {agent}"
            )
        made_for, expires_at, used_at = stored.agent, stored.expires_at, stored.used_at
        now = self._clock.wall()
        if used_at is not None:
            raise JoinTokenRefused(
                f"join token {token.token_id} was already used at {iso_utc(used_at)}; join tokens are single-use: "
                f"make a new one with: meshwarden identity token create --agent {agent}"
            )
        if expires_at <= now:
            raise JoinTokenRefused(
                f"join token {token.token_id} expired at {iso_utc(expires_at)}; "
                f"make a new one with: meshwarden identity token create --agent {agent}"
            )
        if made_for != agent:
            raise JoinTokenRefused(
                f"join token {token.token_id} was made for agent {made_for!r}, not {agent!r}; "
                f"run the sidecar as {made_for!r}, or make a token for {agent!r}"
            )
        if not await self._store.mark_used(token.token_id, now):
            raise JoinTokenRefused(f"join token {token.token_id} was already used; join tokens are single-use")
        return stored


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
