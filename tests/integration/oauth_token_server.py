"""An OAuth 2.0 authorization server stand-in for the tests (aiohttp), speaking the client
credentials grant in the documented wire format:

- RFC 6749 §4.4 (client credentials grant): `POST /token`, form-encoded
  `grant_type=client_credentials` with an optional `scope`; the client authenticates with HTTP
  Basic (§2.3.1: `client_id:client_secret`, each form-urlencoded first) or with `client_id` and
  `client_secret` in the body. §5.1: a successful answer is JSON `{"access_token", "token_type":
  "Bearer", "expires_in", "scope"}` with `Cache-Control: no-store` and `Pragma: no-cache`, and no
  refresh token (§4.4.3). §5.2: errors are HTTP 400 (401 with `WWW-Authenticate` for a failed
  client authentication) with JSON `{"error": "invalid_request" | "invalid_client" |
  "unsupported_grant_type" | "invalid_scope", "error_description"}`.
- RFC 8707: a `resource` parameter binds the token to that resource (its audience).
- RFC 8414: `GET /.well-known/oauth-authorization-server` describes the server (the `mcp`
  client finds the token endpoint there). `authorization_endpoint` is listed because the `mcp`
  client's metadata model requires it, though this server has no use for it (§2 lets a server
  without an authorization-code grant omit it); `/authorize` refuses every request.
- RFC 7662: `POST /introspect` (form `token=...`) answers `{"active": true, "client_id",
  "scope", "exp", "aud"}` or `{"active": false}`; the MCP server stand-in checks tokens there.
  (Introspection callers are not authenticated here: the stand-in listens on loopback only.)

    python tests/integration/oauth_token_server.py --client-id ID --client-secret-file F \\
        --scope tickets.read --log FILE

prints `ready http://127.0.0.1:PORT` (the issuer). Test controls, not part of any RFC:
`POST /test/revoke-all` ends every token issued so far (so a resource server answers 401), and
`POST /test/announce?expires_in=N` makes later tokens announce a lifetime of N seconds while
they stay valid at introspection for `--valid-s` (so a test sees the client renew a token on
its own before any server would refuse it). `--log` gets one JSON line per token request:
issued tokens (with the token, so a test can look for it where it must not be) and refusals.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_plus

from aiohttp import web


@dataclass
class Issued:
    client_id: str
    scope: str
    audience: str
    expires_at: float


class TokenServer:
    def __init__(
        self, issuer: str, client_id: str, client_secret: str, scopes: set[str], valid_s: float, log: Path
    ) -> None:
        self.issuer = issuer
        self._client_id, self._client_secret, self._scopes = client_id, client_secret, scopes
        self._valid_s, self._announced_s = valid_s, int(valid_s)
        self._log = log
        self._tokens: dict[str, Issued] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/oauth-authorization-server", self.metadata)
        app.router.add_post("/token", self.token)
        app.router.add_post("/introspect", self.introspect)
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/test/revoke-all", self.revoke_all)
        app.router.add_post("/test/announce", self.announce)
        return app

    async def metadata(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "introspection_endpoint": f"{self.issuer}/introspect",
                "grant_types_supported": ["client_credentials"],
                "response_types_supported": ["token"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "scopes_supported": sorted(self._scopes),
            }
        )

    async def token(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-www-form-urlencoded":
            return self._error(400, "invalid_request", "the token request must be application/x-www-form-urlencoded")
        form = await request.post()
        client = self._client(request, {k: str(v) for k, v in form.items()})
        if client is None:
            return self._error(401, "invalid_client", "client authentication failed")
        if form.get("grant_type") != "client_credentials":
            return self._error(400, "unsupported_grant_type", "this server grants client_credentials only")
        asked = str(form.get("scope", "")).split()
        if not set(asked) <= self._scopes:
            return self._error(400, "invalid_scope", f"scopes this client may have: {' '.join(sorted(self._scopes))}")
        scope = " ".join(asked) or " ".join(sorted(self._scopes))
        token = secrets.token_urlsafe(32)
        audience = str(form.get("resource", ""))
        self._tokens[token] = Issued(client, scope, audience, time.time() + self._valid_s)
        self._write({"event": "issued", "token": token, "client_id": client, "scope": scope, "resource": audience})
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self._announced_s, "scope": scope}
        return web.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _client(self, request: web.Request, form: dict[str, str]) -> str | None:
        """The authenticated client id (HTTP Basic, else the body's credentials), or None."""
        header = request.headers.get("Authorization", "")
        if header[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(header[6:], validate=True).decode()
            except ValueError:
                return None
            raw_id, _, raw_secret = decoded.partition(":")
            client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        ok = client_id == self._client_id and secrets.compare_digest(secret.encode(), self._client_secret.encode())
        if not ok:
            self._write({"event": "refused", "client_id": client_id[:64]})
        return client_id if ok else None

    async def introspect(self, request: web.Request) -> web.Response:
        form = await request.post()
        found = self._tokens.get(str(form.get("token", "")))
        if found is None or found.expires_at <= time.time():
            return web.json_response({"active": False})
        return web.json_response(
            {
                "active": True,
                "client_id": found.client_id,
                "scope": found.scope,
                "exp": int(found.expires_at),
                "aud": found.audience,
                "token_type": "Bearer",
            }
        )

    async def authorize(self, request: web.Request) -> web.Response:
        return self._error(400, "unsupported_response_type", "this server grants client_credentials only")

    async def revoke_all(self, request: web.Request) -> web.Response:
        self._tokens.clear()
        return web.json_response({"revoked": True})

    async def announce(self, request: web.Request) -> web.Response:
        self._announced_s = int(request.query["expires_in"])
        return web.json_response({"expires_in": self._announced_s})

    def _error(self, status: int, error: str, description: str) -> web.Response:
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="token-stand-in"'
        return web.json_response({"error": error, "error_description": description}, status=status, headers=headers)

    def _write(self, entry: dict[str, str]) -> None:
        with self._log.open("a") as log:
            log.write(json.dumps(entry) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret-file", required=True, type=Path)
    parser.add_argument("--scope", action="append", default=[], help="a scope the client may ask for")
    parser.add_argument("--valid-s", type=float, default=600.0, help="how long a token stays valid")
    parser.add_argument("--log", required=True, type=Path)
    args = parser.parse_args()
    # Protocol IPPROTO_TCP, not socket.socket()'s 0: asyncio sets TCP_NODELAY only then, and without
    # it Nagle held each answer's body for the client's delayed ACK (~40 ms a call).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = TokenServer(
        issuer, args.client_id, args.client_secret_file.read_text().strip(), set(args.scope), args.valid_s, args.log
    )
    print(f"ready {issuer}", flush=True)
    web.run_app(server.app(), sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()
