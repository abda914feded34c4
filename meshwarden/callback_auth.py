"""The sidecar-to-agent hop, authenticated: only the agent's own sidecar may deliver calls.

The agent makes a random secret when it starts and sends it with RegisterAgent (over the
local API, which only its sidecar serves); the sidecar presents it as `authorization: Bearer
<token>` on every meshwarden.v1.Agent call, and the agent compares it in constant time before
it runs anything. On a Unix socket the socket file's mode (0600, in a 0700 directory) keeps
other users out as well; on TCP the secret is all there is, so a sidecar refuses a TCP
callback address registered without one. Agents in other languages do the same three steps
(README: "Agents in other languages").
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from typing import Any, Final

HEADER: Final = "authorization"
MIN_TOKEN_CHARS: Final = 32
MAX_TOKEN_CHARS: Final = 256


def new_token() -> str:
    """A fresh secret for one agent process (256 bits)."""
    return secrets.token_urlsafe(32)


def token_problem(token: str, callback_address: str) -> str | None:
    """What is wrong with a registered `token` for `callback_address`, or None."""
    if not token:
        if callback_address.startswith("unix:"):
            return None
        return (
            f"callback_token is required with the TCP callback address {callback_address or '(the sidecar --app)'}: "
            "any local process could otherwise deliver calls to the agent; send a random secret (the Python SDK "
            "does), or serve on a Unix socket"
        )
    if not MIN_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS or not token.isprintable() or " " in token:
        return f"callback_token must be {MIN_TOKEN_CHARS} to {MAX_TOKEN_CHARS} printable characters without spaces"
    return None


def presented(metadata: Iterable[tuple[str, Any]] | None, token: str) -> bool:
    """Whether `metadata` (a call's invocation metadata) carries `Bearer <token>`."""
    expected = f"Bearer {token}".encode()
    for key, value in metadata or ():
        if key == HEADER:
            given = value.encode() if isinstance(value, str) else bytes(value)
            return hmac.compare_digest(given, expected)
    return False


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """The metadata that presents `token` on a call to the agent (none without a token)."""
    return ((HEADER, f"Bearer {token}"),) if token else ()
