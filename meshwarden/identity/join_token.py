"""The join token's format, shared by the registry (which makes and checks them) and the
sidecar (which reads the CA pin out of it before it trusts the registry).

    mwj1.<token id: 16 hex>.<secret: 43 urlsafe base64>.<CA fingerprint: 64 hex>

The registry stores only a hash of the secret. The token is single-use, bound to one agent,
and expires; the fingerprint lets a sidecar beyond loopback check it reached the right
registry before it sends its CSR (like kubeadm's discovery token CA hash).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

_FORMAT = re.compile(r"mwj1\.([0-9a-f]{16})\.([A-Za-z0-9_-]{43})\.([0-9a-f]{64})")


class JoinTokenError(ValueError):
    pass


@dataclass(frozen=True)
class ParsedJoinToken:
    token_id: str
    secret: str = field(repr=False)
    ca_pin: str  # "sha256:<hex>"


def make(ca_fingerprint: str) -> ParsedJoinToken:
    if not ca_fingerprint.startswith("sha256:"):
        raise JoinTokenError("the CA fingerprint must be sha256:<hex>")
    return ParsedJoinToken(secrets.token_hex(8), secrets.token_urlsafe(32), ca_fingerprint)


def render(token: ParsedJoinToken) -> str:
    return f"mwj1.{token.token_id}.{token.secret}.{token.ca_pin.removeprefix('sha256:')}"


def parse(text: str) -> ParsedJoinToken:
    match = _FORMAT.fullmatch(text.strip())
    if match is None:
        raise JoinTokenError(
            "not a meshwarden join token (mwj1.<id>.<secret>.<ca fingerprint>); "
            "make one with: meshwarden identity token create --agent NAME"
        )
    return ParsedJoinToken(match.group(1), match.group(2), "sha256:" + match.group(3))
