"""The secrets MCP servers need, held by the sidecar and never by its agent.

A bundle's mcp_servers.toml names a credential and how it goes upstream; the secret is read on
this host, from `<--tool-credentials-dir>/<name>` (a file only its owner may read: 0600 or
stricter) or else from the variable MESHWARDEN_TOOL_CREDENTIAL_<NAME>. It is read when a
connection to the server is made, never logged, and errors name where it was looked for,
never what was found.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from meshwarden.errors import ToolServerUnavailable
from meshwarden.policy_bundle.mcp_servers import CredentialRef

if TYPE_CHECKING:  # `mcp` (and its pydantic models, ~40 MB) loads once a server is connected, not at start
    import httpx2
    from mcp.client.auth import OAuthClientProvider
    from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

MAX_SECRET_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class CredentialSource:
    directory: Path | None
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)  # NAME -> secret


class OAuthBearer:
    """The OAuth access token the sidecar holds for one server, for requests it sends itself
    (sidecar/hops/mcp_http_calls.py). Getting and renewing tokens stays with the `mcp`
    package's OAuth flow, which runs on the `mcp` client's requests: a call finding no valid
    token here goes through that client, and the token the flow obtains then serves the next
    calls. A token the server refused is dropped, so the flow asks for a new one at once
    rather than sending the refused one again."""

    def __init__(self, provider: OAuthClientProvider) -> None:
        self._context = provider.context

    def token(self) -> str | None:
        """The access token, while it is within its announced lifetime; None: none held."""
        context = self._context
        if not context.is_token_valid() or context.current_tokens is None:
            return None
        return context.current_tokens.access_token

    def refused(self, token: str) -> None:
        tokens = self._context.current_tokens
        if tokens is not None and tokens.access_token == token:
            self._context.clear_tokens()


@dataclass(frozen=True, slots=True)
class Upstream:
    """What goes upstream with every request to one server: headers (HTTP), an httpx auth
    flow (OAuth client credentials) and its token for the sidecar's own requests, or
    environment variables (stdio)."""

    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    auth: httpx2.Auth | None = field(default=None, repr=False)
    bearer: OAuthBearer | None = field(default=None, repr=False)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)


def env_name(credential: str) -> str:
    return "MESHWARDEN_TOOL_CREDENTIAL_" + credential.upper().replace("-", "_")


def read_secret(ref: CredentialRef, source: CredentialSource, server: str) -> str:
    """The secret `ref` names (blocking: run it in a worker thread); ToolServerUnavailable
    saying where it was looked for when it is missing or exposed."""
    if source.directory is not None:
        path = source.directory / ref.name
        try:
            info = path.stat()
        except FileNotFoundError:
            info = None
        if info is not None:
            if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ToolServerUnavailable(
                    f"MCP server {server}: the credential file {path} may be read by others "
                    f"(mode {stat.S_IMODE(info.st_mode):o}); make it 0600 (chmod 600 {path})"
                )
            secret = path.read_bytes()[:MAX_SECRET_BYTES].decode("utf-8", "replace").strip()
            if secret:
                return secret
    secret = source.environment.get(ref.name.upper().replace("-", "_"), "").strip()  # as config.py keys them
    if secret:
        return secret
    where = f"{source.directory / ref.name} (0600) or " if source.directory is not None else ""
    raise ToolServerUnavailable(
        f"MCP server {server} needs the credential {ref.name!r}, which this sidecar does not hold: put it in "
        f"{where}the variable {env_name(ref.name)} (see --tool-credentials-dir)"
    )


def upstream_for(ref: CredentialRef | None, secret: str, server_url: str) -> Upstream:
    if ref is None:
        return Upstream()
    if ref.scheme == "bearer":
        return Upstream(headers={"Authorization": f"Bearer {secret}"})
    if ref.scheme == "api_key":
        return Upstream(headers={ref.header: secret})
    if ref.scheme == "env":
        return Upstream(env={ref.env: secret})
    from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider

    provider = ClientCredentialsOAuthProvider(
        server_url=server_url,
        storage=_MemoryTokens(),
        client_id=ref.client_id,
        client_secret=secret,
        scope=ref.scope or None,
        issuer=ref.issuer,
    )
    return Upstream(auth=provider, bearer=OAuthBearer(provider))


class _MemoryTokens:
    """OAuth tokens for one server, in memory only: a restarted sidecar asks for new ones.
    (An `mcp.client.auth.TokenStorage`, a Protocol: structural, so `mcp` need not load here.)"""

    def __init__(self) -> None:
        self._tokens: OAuthToken | None = None
        self._client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self._tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self._tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self._client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self._client = client_info
