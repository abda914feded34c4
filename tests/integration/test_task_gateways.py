"""Model and tool calls made for a task carry its signed fencing token through the sidecar's
gateways (the official `openai` and `mcp` clients, header x-meshwarden-task-token): a current
token passes and the receipt names the task and token; once the lease lapsed each gateway
refuses the call with the lease-lost message (403; a JSON-RPC error of kind lease_lost), before
anything reaches the provider or the tool server. One mesh: a registry, one model provider
stand-in, one MCP server, one sidecar."""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from tests.integration.mesh import LocalMesh
from tests.integration.task_leases import holder
from tests.integration.test_mcp_gateway import HTTP_SECRET, READ_TICKET, start_tickets
from tests.integration.test_mcp_gateway import POLICIES as TOOL_POLICIES
from tests.integration.test_model_gateway import AGENT_TOKEN, POLICIES, PROVIDER_KEY, SESSION, Gateway, catalog

pytestmark = pytest.mark.integration


@pytest.fixture
async def gateway(mesh: LocalMesh, tmp_path: Path) -> AsyncIterator[Gateway]:
    """test_model_gateway's gateway with only the provider stand-in these calls use, and
    test_mcp_gateway's tickets server over streamable HTTP."""
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
        sidecar = await mesh.sidecar(
            "support", "--api-token-file", str(token_file), "--receipt-ship-interval-s", "0.2",
            "--tool-credentials-dir", str(secrets), env={"STANDIN_KEY": PROVIDER_KEY},
        )  # fmt: skip
        opened = Gateway(mesh, sidecar, tmp_path / "unused.jsonl")
        yield opened
        for client in opened.clients:
            await client.close()
    finally:
        tickets.terminate()
        tickets.wait(timeout=10)


def _tools(gateway: Gateway, headers: dict[str, str]) -> Client:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {AGENT_TOKEN}", **headers})
    return Client(streamable_http_client(f"{gateway.base}/mcp", http_client=http))


def _header(signed: bytes) -> str:
    return base64.urlsafe_b64encode(signed).rstrip(b"=").decode()


async def test_a_model_call_under_a_lapsed_task_token_is_refused_with_lease_lost(gateway: Gateway) -> None:
    async with holder(gateway.mesh, "planner", "plan.trip") as planner:
        leased = await planner.submit_and_lease(ttl_s=0.8)
    task = leased.task
    headers = {**SESSION, "x-meshwarden-task-id": task.id, "x-meshwarden-task-token": _header(leased.signed_token)}
    client = gateway.openai(**headers)
    answer = await client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "plan"}])
    assert answer.choices[0].message.content == "You said: plan"
    async with _tools(gateway, headers) as tools:
        read = await tools.call_tool("tickets.read_ticket", {"ticket_id": 7})
    assert not read.is_error
    model_receipt, tool_receipt = sorted(await gateway.receipts(2), key=lambda r: r.call_kind)
    assert (model_receipt.task_id, model_receipt.fencing_token, model_receipt.model_task_id) == (task.id, 1, task.id)
    assert (tool_receipt.call_kind, tool_receipt.task_id, tool_receipt.fencing_token) == ("tool", task.id, 1)

    # Nobody heartbeats: the lease lapses, and no sidecar needs to be told.
    await asyncio.sleep(max(task.lease_expires_at.ToMicroseconds() / 1e6 - time.time(), 0.0) + 0.2)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "again"}])
    assert f"lease lost: task {task.id} token 1" in refused.value.message and refused.value.code == "lease_lost"
    async with _tools(gateway, headers) as tools:
        with pytest.raises(MCPError) as tool_refused:
            await tools.call_tool("tickets.read_ticket", {"ticket_id": 7})
    assert f"lease lost: task {task.id} token 1" in tool_refused.value.error.message
    assert (tool_refused.value.error.data or {})["kind"] == "lease_lost"

    with pytest.raises(openai.BadRequestError) as mismatched:  # a token for another task than the id names
        await gateway.openai(**{**headers, "x-meshwarden-task-id": "task-other"}).chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "x"}]
        )
    assert "x-meshwarden-task-id" in mismatched.value.message
    assert len(await gateway.receipts(4)) >= 4  # the refusals have their receipts too
