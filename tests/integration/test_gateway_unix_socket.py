"""The agent's HTTP gateway on a Unix socket (`--gateway-listen unix:PATH`, created 0600): the
official `openai`, `anthropic` and `mcp` clients reach it through an httpx transport bound to
the socket (`httpx2.AsyncHTTPTransport(uds=PATH)`), the URL's host then being only a name, and
get the same answers as over loopback TCP; the token is still required. One mesh: a registry,
one model provider stand-in, one MCP server (streamable HTTP), one sidecar."""

from __future__ import annotations

import asyncio
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx2
import openai
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT

from tests.integration.mesh import LocalMesh
from tests.integration.test_mcp_gateway import HTTP_SECRET, READ_TICKET, start_tickets
from tests.integration.test_mcp_gateway import POLICIES as TOOL_POLICIES
from tests.integration.test_model_gateway import AGENT_TOKEN, POLICIES, PROVIDER_KEY, catalog

pytestmark = pytest.mark.integration

BASE = "http://sidecar"  # any host: the transport connects to the socket


@dataclass
class UnixGateway:
    socket: Path

    def http(self, token: str = AGENT_TOKEN) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            transport=httpx2.AsyncHTTPTransport(uds=str(self.socket)),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT),
        )


@pytest.fixture
async def gateway(mesh: LocalMesh, tmp_path: Path) -> AsyncIterator[UnixGateway]:
    standin = [sys.executable, "-m", "meshwarden.demo.model_provider", "--key", PROVIDER_KEY]
    up = (await mesh.start_process("provider-up", standin, health_address_key=None)).addresses["listen"]
    tickets, tickets_url = await asyncio.to_thread(start_tickets, tmp_path)
    try:
        key_file = tmp_path / "claude.key"
        key_file.write_text(PROVIDER_KEY + "\n")
        key_file.chmod(0o600)
        secrets = tmp_path / "tool-credentials"
        secrets.mkdir(mode=0o700)
        (secrets / "tickets-token").write_text(HTTP_SECRET)
        (secrets / "tickets-token").chmod(0o600)
        servers = (
            f'[servers.tickets]\nurl = "{tickets_url}"\ncredential = {{ name = "tickets-token", scheme = "bearer" }}\n'
            f'[servers.tickets.tools.read_ticket]\nrisk = "read"\ninput_schema_sha256 = "{READ_TICKET}"\n'
        )
        bundle = mesh.bundles.make(
            2, {**POLICIES, **TOOL_POLICIES}, models=catalog(up, up, up, key_file), mcp_servers=servers
        )
        await mesh.push_bundle(bundle)
        token_file = tmp_path / "agent.token"
        token_file.write_text(AGENT_TOKEN)
        token_file.chmod(0o600)
        socket = tmp_path / "gateway.sock"
        sidecar = await mesh.sidecar(
            "support", "--api-token-file", str(token_file), "--gateway-listen", f"unix:{socket}",
            "--tool-credentials-dir", str(secrets), env={"STANDIN_KEY": PROVIDER_KEY},
        )  # fmt: skip
        assert sidecar.addresses["gateway"] == f"unix:{socket}"
        yield UnixGateway(socket)
    finally:
        tickets.terminate()
        tickets.wait(timeout=10)


async def test_official_clients_call_models_and_tools_over_the_unix_socket(gateway: UnixGateway) -> None:
    assert stat.S_IMODE(gateway.socket.stat().st_mode) == 0o600  # only the agent's user may connect

    async with gateway.http() as http:
        gpt = openai.AsyncOpenAI(base_url=f"{BASE}/v1", api_key=AGENT_TOKEN, http_client=http, max_retries=0)
        chat = await gpt.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi there"}])
        assert chat.choices[0].message.content == "You said: hi there"
        streamed = await gpt.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "one two"}], stream=True
        )
        assert "".join([c.choices[0].delta.content or "" async for c in streamed]) == "You said: one two"

        claude = anthropic.AsyncAnthropic(base_url=BASE, api_key=AGENT_TOKEN, http_client=http, max_retries=0)
        message = await claude.messages.create(
            model="claude-test", max_tokens=50, messages=[{"role": "user", "content": "refund please"}]
        )
        assert message.content[0].type == "text" and message.content[0].text == "You said: refund please"

    async with Client(streamable_http_client(f"{BASE}/mcp", http_client=gateway.http())) as tools:
        listed = [tool.name for tool in (await tools.list_tools()).tools]
        read = await tools.call_tool("tickets.read_ticket", {"ticket_id": 7})
    assert "tickets.read_ticket" in listed
    assert not read.is_error and "ticket 7" in read.content[0].text  # type: ignore[union-attr]

    async with gateway.http(token="not-the-agent-token") as stranger:  # the socket's mode is not the only guard
        refused = openai.AsyncOpenAI(base_url=f"{BASE}/v1", api_key="x", http_client=stranger, max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await refused.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
