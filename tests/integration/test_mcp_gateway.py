"""The sidecar as its agent's MCP gateway, through real processes: two MCP servers built with
the official `mcp` package (one over streamable HTTP, one over stdio that the sidecar starts),
a real sidecar and registry, and the official `mcp` client pointed at the sidecar's /mcp."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from meshwarden.supervise import Child, meshwarden_argv
from tests.integration.mesh import LocalMesh
from tests.integration.test_policy import wait_for_revision

pytestmark = pytest.mark.integration

SERVER = Path(__file__).parent / "mcp_servers" / "tickets_server.py"
READ_TICKET = "c8580a70a2c52497b83c5c9433f548e4bd4fa6d77f7abe377afc7baa4e8d20e3"
CLOSE_TICKET = "5cc4faaa475c2705b40751d9db98299e0648fe78970fd22b79431ff02779256b"
HTTP_SECRET = "tickets-http-secret-" + "q" * 24
STDIO_SECRET = "desk-stdio-secret-" + "z" * 24
AGENT_TOKEN = "agent-local-token-" + "a" * 30

POLICIES = {
    "tools.cedar": """
@id("read-tools")
@reason("any agent may use tools that only read")
permit (principal, action == Action::"CallTool", resource) when { resource.risk == "read" };

@id("desk-closes")
@reason("the support desk may close its own tickets")
permit (principal, action == Action::"CallTool", resource == Tool::"desk.close_ticket");
""",
}


def servers_toml(url: str, drift_hash: str = READ_TICKET) -> str:
    command = json.dumps([sys.executable, str(SERVER), "--require-token", STDIO_SECRET])
    return f"""
[servers.tickets]
url = "{url}"
credential = {{ name = "tickets-token", scheme = "bearer" }}
[servers.tickets.tools.read_ticket]
risk = "read"
input_schema_sha256 = "{drift_hash}"
[servers.tickets.tools.close_ticket]
risk = "destructive"
input_schema_sha256 = "{CLOSE_TICKET}"

[servers.desk]
command = {command}
credential = {{ name = "desk-token", scheme = "env", env = "TICKETS_TOKEN" }}
[servers.desk.tools.read_ticket]
risk = "read"
input_schema_sha256 = "{READ_TICKET}"
[servers.desk.tools.close_ticket]
risk = "write"
input_schema_sha256 = "{CLOSE_TICKET}"
"""


@dataclass
class Gateway:
    mesh: LocalMesh
    sidecar: Child
    url: str  # the sidecar's MCP endpoint
    tickets: subprocess.Popen[str]  # the streamable HTTP server
    tickets_url: str

    def client(self, token: str = AGENT_TOKEN, **kw: object) -> Client:
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}", **kw.pop("headers", {})})  # type: ignore[dict-item]
        return Client(streamable_http_client(self.url, http_client=http), **kw)  # type: ignore[arg-type]


def start_tickets(*extra: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "--http", "0", "--require-token", HTTP_SECRET, *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("ready "), line
    return process, line.split()[1]


@pytest.fixture
async def gateway(mesh: LocalMesh, tmp_path: Path) -> AsyncIterator[Gateway]:
    tickets, tickets_url = await asyncio.to_thread(start_tickets)
    try:
        secrets = tmp_path / "tool-credentials"
        secrets.mkdir(mode=0o700)
        (secrets / "tickets-token").write_text(HTTP_SECRET)
        os.chmod(secrets / "tickets-token", 0o600)
        token_file = tmp_path / "agent-token"
        token_file.write_text(AGENT_TOKEN)
        os.chmod(token_file, 0o600)
        await mesh.push_bundle(mesh.bundles.make(2, {**POLICIES}, mcp_servers=servers_toml(tickets_url)))
        side = await mesh.sidecar(
            "support",
            "--api-token-file",
            str(token_file),
            "--tool-credentials-dir",
            str(secrets),
            env={"MESHWARDEN_TOOL_CREDENTIAL_DESK_TOKEN": STDIO_SECRET},
        )
        await wait_for_revision(mesh, 2, 1)
        yield Gateway(mesh, side, f"http://{side.addresses['gateway']}/mcp", tickets, tickets_url)
    finally:
        tickets.terminate()
        await asyncio.to_thread(tickets.wait, 10)


async def test_tools_of_both_servers_are_listed_and_called_through_the_sidecar(gateway: Gateway) -> None:
    async with gateway.client() as client:
        listed = sorted(t.name for t in (await client.list_tools()).tools)
        http = await client.call_tool("tickets.read_ticket", {"ticket_id": 7})
        stdio = await client.call_tool("desk.close_ticket", {"ticket_id": 8, "reason": "fixed"})
        assert client.protocol_version == "2026-07-28"
    # the destructive tickets.close_ticket has no permit: not listed
    assert listed == ["desk.close_ticket", "desk.read_ticket", "tickets.read_ticket"]
    assert not http.is_error and "ticket 7: the printer is on fire" in http.content[0].text  # type: ignore[union-attr]
    assert not stdio.is_error and "ticket 8 closed: fixed" in stdio.content[0].text  # type: ignore[union-attr]


async def test_the_previous_revision_works_too(gateway: Gateway) -> None:
    async with gateway.client(mode="legacy") as client:
        assert client.protocol_version == "2025-11-25"
        listed = sorted(t.name for t in (await client.list_tools()).tools)
        result = await client.call_tool("desk.read_ticket", {"ticket_id": 3})
    assert "tickets.read_ticket" in listed and "tickets.close_ticket" not in listed
    assert "ticket 3" in result.content[0].text  # type: ignore[union-attr]


async def test_a_denied_tool_is_refused_naming_the_tool(gateway: Gateway) -> None:
    async with gateway.client() as client:
        with pytest.raises(MCPError) as info:
            await client.call_tool("tickets.close_ticket", {"ticket_id": 1, "reason": "spam"})
    assert info.value.error.code == -32000
    assert "tickets.close_ticket" in info.value.error.message and "no policy permits" in info.value.error.message
    assert info.value.error.data == {"kind": "policy_denied"}
