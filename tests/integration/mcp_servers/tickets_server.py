"""A real MCP server for the tests, built with the official `mcp` package: support tickets.

`--http PORT` serves streamable HTTP (port 0 picks one; the bound address goes to stdout as
`ready http://127.0.0.1:PORT/mcp`), else stdio. `--require-token-file F` refuses requests
without `Authorization: Bearer <F's text>` (HTTP), or starts only with the variable
TICKETS_TOKEN set to it (stdio).
`--drift` serves read_ticket with another input schema than the bundle declares.
`--log-auth FILE` (HTTP) appends each request's Authorization header to FILE, so a test can
see what reached the server.
`--oauth-issuer URL` (HTTP) makes it an OAuth-protected resource with the `mcp` package's own
server auth: it publishes its protected resource metadata (RFC 9728) naming that issuer,
answers 401 with `WWW-Authenticate` to a request without a valid token, and checks each token
at the issuer's introspection endpoint (RFC 7662), for `--oauth-scope` and for this server
as the token's audience (RFC 8707).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from mcp.server import MCPServer


class IntrospectedTokens:
    """A TokenVerifier (mcp.server.auth.provider) that asks the issuer whether a token is live."""

    def __init__(self, issuer: str) -> None:
        self._introspect = f"{issuer}/introspect"

    async def verify_token(self, token: str) -> Any:
        import httpx2
        from mcp.server.auth.provider import AccessToken

        async with httpx2.AsyncClient(timeout=10) as http:
            answer = (await http.post(self._introspect, data={"token": token})).json()
        if not answer.get("active"):
            return None
        return AccessToken(
            token=token,
            client_id=answer["client_id"],
            scopes=answer.get("scope", "").split(),
            expires_at=answer.get("exp"),
            resource=answer.get("aud") or None,
        )


def build(drift: bool, issuer: str = "", url: str = "", scope: str = "") -> MCPServer:
    if issuer:
        from mcp.server.auth.settings import AuthSettings

        auth = AuthSettings(
            issuer_url=issuer,  # type: ignore[arg-type]
            resource_server_url=url,  # type: ignore[arg-type]
            required_scopes=[scope] if scope else None,
            validate_token_resource=True,
        )
        app = MCPServer("tickets", token_verifier=IntrospectedTokens(issuer), auth=auth)
    else:
        app = MCPServer("tickets")

    if drift:

        @app.tool()
        def read_ticket(ticket_id: int, include_private_notes: bool = False) -> str:
            """Read one support ticket."""
            return f"ticket {ticket_id}: the printer is on fire"

    else:

        @app.tool()
        def read_ticket(ticket_id: int) -> str:
            """Read one support ticket."""
            return f"ticket {ticket_id}: the printer is on fire"

    @app.tool()
    def close_ticket(ticket_id: int, reason: str) -> str:
        """Close a ticket for good."""
        if ticket_id == 13:
            raise ValueError("ticket 13 is cursed and cannot be closed")
        return f"ticket {ticket_id} closed: {reason}"

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None)
    parser.add_argument("--require-token-file", default="")
    parser.add_argument("--drift", action="store_true")
    parser.add_argument("--log-auth", default="")
    parser.add_argument("--oauth-issuer", default="")
    parser.add_argument("--oauth-scope", default="")
    args = parser.parse_args()
    required = open(args.require_token_file).read().strip() if args.require_token_file else ""
    if args.http is None:
        app = build(args.drift)
        if required and os.environ.get("TICKETS_TOKEN") != required:
            print("tickets: TICKETS_TOKEN missing or wrong", file=sys.stderr)
            sys.exit(3)
        app.run()
        return
    import uvicorn
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    # Protocol IPPROTO_TCP, not socket.socket()'s 0: asyncio sets TCP_NODELAY only then, and without
    # it Nagle held each answer's body for the client's delayed ACK (~40 ms a call).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", args.http))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    app = build(args.drift, args.oauth_issuer, url, args.oauth_scope)
    starlette_app = app.streamable_http_app(json_response=True, stateless_http=True)
    if required or args.log_auth:
        wanted = f"Bearer {required}"

        async def check(request: Request, call_next):  # type: ignore[no-untyped-def]
            if args.log_auth:
                with open(args.log_auth, "a") as log:
                    log.write(request.headers.get("authorization", "(none)") + "\n")
            if required and request.headers.get("authorization") != wanted:
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            response: Response = await call_next(request)
            return response

        starlette_app.add_middleware(BaseHTTPMiddleware, dispatch=check)
    print(f"ready {url}", flush=True)
    config = uvicorn.Config(starlette_app, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
