"""The operator credential: who may make join tokens and list the catalog without an SVID.

For now one random bearer token, made at the registry's first start in
`<data-dir>/operator.token` (mode 0600, written atomically). The web console adds a second,
read-only role: `<data-dir>/viewer.token` (made when the console is first served) lets a
person look at every page of the console and act on nothing. Whoever can read that file is an
operator: on one machine that is the user who runs the registry, with no set-up. Clients send
it as gRPC metadata `authorization: Bearer <token>` (over TLS); it is compared in constant
time and never logged, only the path of its file is. A later issue generalises operator
credentials (operator SVIDs, several operators); this module is where that goes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from meshwarden.registry.errors import StoreError
from meshwarden.registry.private_files import PrivateFileError, read_private, write_private

log = logging.getLogger(__name__)

OPERATOR_TOKEN_FILE: Final = "operator.token"
AUTHORIZATION_HEADER: Final = "authorization"
BEARER_PREFIX: Final = "Bearer "
TOKEN_PREFIX: Final = "mwo1."
VIEWER_TOKEN_FILE: Final = "viewer.token"
VIEWER_TOKEN_PREFIX: Final = "mwv1."
OPERATOR: Final = "operator"
VIEWER: Final = "viewer"
# Who the operator's CLI says runs it ($USER), kept in the audit log as a claim beside the actor.
OPERATOR_USER_HEADER: Final = "meshwarden-operator-user"


class OperatorCredential:
    def __init__(self, token: str, path: Path, role: str = OPERATOR) -> None:
        self._token, self._path, self._role = token, path, role

    def __repr__(self) -> str:
        return f"OperatorCredential(path={str(self._path)!r}, role={self._role!r})"  # never the token

    @classmethod
    def load_or_create(cls, data_dir: Path) -> OperatorCredential:
        """The token in `<data_dir>/operator.token`, made there first if there is none."""
        return cls._load_or_create(data_dir / OPERATOR_TOKEN_FILE, TOKEN_PREFIX, OPERATOR)

    @classmethod
    def load_or_create_viewer(cls, data_dir: Path) -> OperatorCredential:
        """The read-only console token in `<data_dir>/viewer.token`, made there first if there is none."""
        return cls._load_or_create(data_dir / VIEWER_TOKEN_FILE, VIEWER_TOKEN_PREFIX, VIEWER)

    @classmethod
    def _load_or_create(cls, path: Path, prefix: str, role: str) -> OperatorCredential:
        try:
            if path.exists():
                token = read_private(path).decode().strip()
                if not token.startswith(prefix):
                    raise StoreError(f"{path} does not hold a {role} token; delete it to make a new one")
                log.info("%s token in %s", role, path)
                return cls(token, path, role)
            token = prefix + secrets.token_urlsafe(32)
            write_private(path, (token + "\n").encode())
        except PrivateFileError as exc:
            raise StoreError(str(exc)) from exc
        log.info("created the %s token in %s (whoever reads it is a registry %s)", role, path, role)
        return cls(token, path, role)

    @property
    def role(self) -> str:
        """ "operator" (may act) or "viewer" (the console's read-only role)."""
        return self._role

    @property
    def path(self) -> Path:
        return self._path

    @property
    def identity(self) -> str:
        """Who holds this credential, as the audit log names them: a fingerprint of the token
        (safe to show; the token cannot be recovered from it)."""
        return f"{self._role}:sha256:" + hashlib.sha256(self._token.encode()).hexdigest()[:16]

    def accepts(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode(), self._token.encode())


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The token of an `authorization: Bearer <token>` metadata entry; "" when there is none."""
    for key, value in metadata or ():
        if key == AUTHORIZATION_HEADER:
            text = value.decode() if isinstance(value, bytes) else value
            return text[len(BEARER_PREFIX) :].strip() if text.startswith(BEARER_PREFIX) else ""
    return ""
