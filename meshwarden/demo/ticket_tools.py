"""The demo's MCP side: the support agent reads each ticket through its sidecar's MCP endpoint
(`tickets.read_ticket`), from the ticket MCP server (meshwarden.demo.tickets_mcp) that the
sidecar starts over stdio. The bundle declares the server and the tool's risk; the sidecar
holds the server's secret (a 0600 file); the agent holds neither.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from meshwarden.supervise import Child

READ_TICKET_SHA256: Final = "c8580a70a2c52497b83c5c9433f548e4bd4fa6d77f7abe377afc7baa4e8d20e3"
SCHEMA: Final = """
// MCP tools (mcp_servers.toml): sidecars build one Tool per declared tool, id SERVER.TOOL.
entity Tool { server: String, name: String, risk: String };
action "CallTool" appliesTo {
  principal: [Agent],
  resource: [Tool],
  context: { args: { ticket_id?: Long }, session_id: String, workflow_id: String, team: String },
};
"""
POLICY: Final = """@id("support-reads-tickets")
@reason("the support team reads tickets; other tools need their own grant")
permit (principal in Team::"support", action == Action::"CallTool", resource) when { resource.risk == "read" };
"""


def add_to_bundle(directory: Path) -> None:
    """The ticket server, its tool's risk and schema hash, and who may call it."""
    command = [sys.executable, "-m", "meshwarden.demo.tickets_mcp", "--expect-token-env", "TICKETS_TOKEN"]
    (directory / "mcp_servers.toml").write_text(
        "[servers.tickets]\n"
        f"command = {json.dumps(command)}\n"
        'credential = { name = "tickets", scheme = "env", env = "TICKETS_TOKEN" }\n\n'
        "[servers.tickets.tools.read_ticket]\n"
        'risk = "read"\n'
        f'input_schema_sha256 = "{READ_TICKET_SHA256}"\n'
    )
    schema = directory / "schema.cedarschema"
    schema.write_text(schema.read_text() + SCHEMA)
    (directory / "policies" / "tools.cedar").write_text(POLICY)


def sidecar_flags(workdir: Path) -> list[str]:
    """The support sidecar's flags: where it finds the ticket server's secret."""
    directory = workdir / "tool-credentials"
    directory.mkdir(mode=0o700, exist_ok=True)
    secret = directory / "tickets"
    secret.touch(mode=0o600)
    secret.write_text(secrets.token_urlsafe(24))
    return ["--tool-credentials-dir", str(directory)]


def agent_flags(sidecar: Child) -> list[str]:
    return ["--tickets-mcp", f"http://{sidecar.addresses['gateway']}/mcp"]


class TicketReader:
    """Reads tickets with the official MCP client, through the agent's own sidecar."""

    def __init__(self, url: str) -> None:
        self._url = url

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> tuple[TicketReader | None, list[str]]:
        """(a reader if --tickets-mcp was given, the other arguments)."""
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--tickets-mcp", default="")
        options, rest = parser.parse_known_args(list(argv))
        return (cls(options.tickets_mcp) if options.tickets_mcp else None), rest

    async def read(self, ticket_id: str, session_id: str) -> str:
        number = int(re.sub(r"\D", "", ticket_id) or 0)
        http = create_mcp_http_client(headers={"x-meshwarden-session-id": session_id})  # attribution
        async with Client(streamable_http_client(self._url, http_client=http)) as client:
            result = await client.call_tool("tickets.read_ticket", {"ticket_id": number})
        texts = [getattr(block, "text", "") for block in result.content]
        return " ".join(t for t in texts if t)
