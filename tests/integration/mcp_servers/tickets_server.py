"""A real MCP server for the tests, built with the official `mcp` package: support tickets.

`--http PORT` serves streamable HTTP (port 0 picks one; the bound address goes to stdout as
`ready http://127.0.0.1:PORT/mcp`), else stdio. `--require-token-file F` refuses requests
without `Authorization: Bearer <F's text>` (HTTP), or starts only with the variable
TICKETS_TOKEN set to it (stdio).
`--drift` serves read_ticket with another input schema than the bundle declares.
`--log-auth FILE` (HTTP) appends each request's Authorization header to FILE, so a test can
see what reached the server.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from mcp.server import MCPServer


def build(drift: bool) -> MCPServer:
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
    args = parser.parse_args()
    app = build(args.drift)
    required = open(args.require_token_file).read().strip() if args.require_token_file else ""
    if args.http is None:
        if required and os.environ.get("TICKETS_TOKEN") != required:
            print("tickets: TICKETS_TOKEN missing or wrong", file=sys.stderr)
            sys.exit(3)
        app.run()
        return
    import uvicorn
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    starlette_app = app.streamable_http_app(json_response=True, stateless_http=True)
    if required:
        wanted = f"Bearer {required}"

        async def check(request: Request, call_next):  # type: ignore[no-untyped-def]
            if args.log_auth:
                with open(args.log_auth, "a") as log:
                    log.write(request.headers.get("authorization", "(none)") + "\n")
            if request.headers.get("authorization") != wanted:
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            response: Response = await call_next(request)
            return response

        starlette_app.add_middleware(BaseHTTPMiddleware, dispatch=check)
    sock = socket.socket()
    sock.bind(("127.0.0.1", args.http))
    print(f"ready http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)
    config = uvicorn.Config(starlette_app, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
