"""The demo's ticket system as an MCP server, built with the official `mcp` package: the support
agent reads tickets through its sidecar's MCP endpoint as `tickets.read_ticket`.

    python -m meshwarden.demo.tickets_mcp            # stdio: the sidecar starts it (mcp_servers.toml)
    python -m meshwarden.demo.tickets_mcp --http 0   # streamable HTTP; prints `ready http://127.0.0.1:PORT/mcp`

With the variable TICKETS_TOKEN set (stdio), it starts only when the sidecar hands over that
secret: the credential reaches the server, never the agent.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Final

from mcp.server import MCPServer

TICKETS: Final = {
    1001: "Customer charged twice for order 5521 (49.00 USD each).",
    1002: "Password reset e-mail never arrives.",
    1999: "Charged twice for the annual plan (150.00 USD each).",
}


def build() -> MCPServer:
    app = MCPServer("tickets")

    @app.tool()
    def read_ticket(ticket_id: int) -> str:
        """Read one support ticket by its number."""
        return TICKETS.get(ticket_id, f"no ticket {ticket_id}")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m meshwarden.demo.tickets_mcp")
    parser.add_argument("--http", type=int, default=None, metavar="PORT", help="serve streamable HTTP on this port")
    parser.add_argument("--expect-token-env", default="", metavar="NAME", help="refuse to start unless NAME is set")
    args = parser.parse_args()
    if args.expect_token_env and not os.environ.get(args.expect_token_env):
        print(f"tickets_mcp: {args.expect_token_env} is not set; the sidecar hands it over", file=sys.stderr)
        sys.exit(3)
    app = build()
    if args.http is None:
        app.run()
        return
    import uvicorn

    # Protocol IPPROTO_TCP, not socket.socket()'s 0: asyncio sets TCP_NODELAY only then, and without
    # it Nagle held each answer's body for the client's delayed ACK (~40 ms a call).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", args.http))
    print(f"ready http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)
    starlette_app = app.streamable_http_app(json_response=True, stateless_http=True)
    uvicorn.Server(uvicorn.Config(starlette_app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()
