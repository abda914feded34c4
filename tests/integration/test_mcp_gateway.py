"""The sidecar as its agent's MCP gateway, through real processes: two MCP servers built with
the official `mcp` package (one over streamable HTTP, one over stdio that the sidecar starts),
a real sidecar and registry, and the official `mcp` client pointed at the sidecar's /mcp."""

from __future__ import annotations

import asyncio
import json
import os
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

from meshwarden.supervise import Child
from tests.integration.mesh import LocalMesh
from tests.integration.test_approvals import pending
from tests.integration.test_controls import cli
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


def servers_toml(url: str, stdio_token_file: Path) -> str:
    command = json.dumps([sys.executable, str(SERVER), "--require-token-file", str(stdio_token_file)])
    return f"""
[servers.tickets]
url = "{url}"
credential = {{ name = "tickets-token", scheme = "bearer" }}
[servers.tickets.tools.read_ticket]
risk = "read"
input_schema_sha256 = "{READ_TICKET}"
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
    auth_log: Path  # the Authorization headers that reached the HTTP server

    def client(self, token: str = AGENT_TOKEN, **kw: object) -> Client:
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}", **kw.pop("headers", {})})  # type: ignore[dict-item]
        return Client(streamable_http_client(self.url, http_client=http), **kw)  # type: ignore[arg-type]


def start_tickets(workdir: Path) -> tuple[subprocess.Popen[str], str]:
    (workdir / "tickets-http.expected").write_text(HTTP_SECRET)
    argv = ["--http", "0", "--require-token-file", str(workdir / "tickets-http.expected")]
    process = subprocess.Popen(
        [sys.executable, str(SERVER), *argv, "--log-auth", str(workdir / "tickets-auth.log")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("ready "), line
    return process, line.split()[1]


@pytest.fixture
async def gateway(mesh: LocalMesh, tmp_path: Path) -> AsyncIterator[Gateway]:
    auth_log = tmp_path / "tickets-auth.log"
    tickets, tickets_url = await asyncio.to_thread(start_tickets, tmp_path)
    (tmp_path / "desk-stdio.expected").write_text(STDIO_SECRET)
    try:
        secrets = tmp_path / "tool-credentials"
        secrets.mkdir(mode=0o700)
        (secrets / "tickets-token").write_text(HTTP_SECRET)
        os.chmod(secrets / "tickets-token", 0o600)
        token_file = tmp_path / "agent-token"
        token_file.write_text(AGENT_TOKEN)
        os.chmod(token_file, 0o600)
        await mesh.push_bundle(
            mesh.bundles.make(2, {**POLICIES}, mcp_servers=servers_toml(tickets_url, tmp_path / "desk-stdio.expected"))
        )
        side = await mesh.sidecar(
            "support",
            "--api-token-file",
            str(token_file),
            "--tool-credentials-dir",
            str(secrets),
            "--breaker-failures",
            "2",
            "--breaker-reset-s",
            "60",
            "--max-payload-bytes",
            str(64 * 1024),
            "--receipt-ship-interval-s",
            "0.2",
            env={"MESHWARDEN_TOOL_CREDENTIAL_DESK_TOKEN": STDIO_SECRET},
        )
        await wait_for_revision(mesh, 2, 1)
        yield Gateway(mesh, side, f"http://{side.addresses['gateway']}/mcp", tickets, tickets_url, auth_log)
    finally:
        tickets.terminate()
        await asyncio.to_thread(tickets.wait, 10)


async def test_tools_are_listed_and_called_at_both_revisions_and_a_denied_one_is_refused(gateway: Gateway) -> None:
    async with gateway.client() as client:
        listed = sorted(t.name for t in (await client.list_tools()).tools)
        http = await client.call_tool("tickets.read_ticket", {"ticket_id": 7})
        stdio = await client.call_tool("desk.close_ticket", {"ticket_id": 8, "reason": "fixed"})
        assert client.protocol_version == "2026-07-28"
    # the destructive tickets.close_ticket has no permit: not listed
    assert listed == ["desk.close_ticket", "desk.read_ticket", "tickets.read_ticket"]
    assert not http.is_error and "ticket 7: the printer is on fire" in http.content[0].text  # type: ignore[union-attr]
    assert not stdio.is_error and "ticket 8 closed: fixed" in stdio.content[0].text  # type: ignore[union-attr]

    # the revision before, through its initialize handshake
    async with gateway.client(mode="legacy") as client:
        assert client.protocol_version == "2025-11-25"
        listed = sorted(t.name for t in (await client.list_tools()).tools)
        result = await client.call_tool("desk.read_ticket", {"ticket_id": 3})
    assert "tickets.read_ticket" in listed and "tickets.close_ticket" not in listed
    assert "ticket 3" in result.content[0].text  # type: ignore[union-attr]

    # a tool no policy permits is refused, naming it
    async with gateway.client() as client:
        with pytest.raises(MCPError) as info:
            await client.call_tool("tickets.close_ticket", {"ticket_id": 1, "reason": "spam"})
    assert info.value.error.code == -32000
    assert "tickets.close_ticket" in info.value.error.message and "no policy permits" in info.value.error.message
    assert (info.value.error.data or {})["kind"] == "policy_denied"


async def post(gateway: Gateway, body: bytes | object, **headers: str) -> httpx2.Response:
    """One raw POST to the sidecar's /mcp, with the agent's token."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx2.AsyncClient(timeout=30) as http:
        return await http.post(
            gateway.url,
            content=content,
            headers={"Authorization": f"Bearer {AGENT_TOKEN}", "Content-Type": "application/json", **headers},
        )


def modern(method: str, params: dict[str, object] | None = None, version: str = "2026-07-28") -> dict[str, object]:
    meta = {"io.modelcontextprotocol/protocolVersion": version, "io.modelcontextprotocol/clientCapabilities": {}}
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**(params or {}), "_meta": meta}}


async def test_bad_requests_version_mismatch_and_schema_drift_get_the_right_json_rpc_error(gateway: Gateway) -> None:
    parse = await post(gateway, b'{"jsonrpc": "2.0", "id": 1, "method": ')
    assert parse.status_code == 400 and parse.json()["error"]["code"] == -32700
    assert "not JSON" in parse.json()["error"]["message"]

    batch = await post(gateway, [modern("ping")])
    assert batch.json()["error"]["code"] == -32600 and "batches" in batch.json()["error"]["message"]

    no_version = await post(gateway, {"id": 1, "method": "ping"})
    assert (
        no_version.json()["error"]["code"] == -32600
        and '"jsonrpc" must be "2.0"' in no_version.json()["error"]["message"]
    )

    unknown = await post(gateway, modern("resources/list"))
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == -32601
    assert "resources/list" in unknown.json()["error"]["message"]

    huge = await post(gateway, modern("tools/call", {"name": "tickets.read_ticket", "arguments": {"x": "y" * 100_000}}))
    assert huge.status_code == 413 and huge.json()["error"]["code"] == -32600
    assert "65536 bytes" in huge.json()["error"]["message"]

    bad_args = await post(
        gateway, modern("tools/call", {"name": "tickets.read_ticket", "arguments": {"ticket_id": "seven"}})
    )
    error = bad_args.json()["error"]
    assert bad_args.status_code == 400 and error["code"] == -32602
    assert (
        "tickets.read_ticket" in error["message"]
        and "$.ticket_id" in error["message"]
        and "integer" in error["message"]
    )

    missing = await post(gateway, modern("tools/call", {"name": "tickets.read_ticket", "arguments": {}}))
    assert missing.json()["error"]["code"] == -32602 and "ticket_id" in missing.json()["error"]["message"]

    no_tool = await post(gateway, modern("tools/call", {"name": "tickets.burn_everything", "arguments": {}}))
    assert no_tool.json()["error"]["code"] == -32602 and "tickets.burn_everything" in no_tool.json()["error"]["message"]

    wrong_token = await post(gateway, modern("ping"), Authorization="Bearer not-the-token")
    assert wrong_token.status_code == 401 and "local API token" in wrong_token.json()["error"]["message"]

    # a protocol version this endpoint does not speak gets the spec's error, naming the ones it does
    too_new = await post(gateway, modern("server/discover", version="2099-01-01"))
    error = too_new.json()["error"]
    assert too_new.status_code == 400 and error["code"] == -32022
    assert error["data"] == {"supported": ["2026-07-28"], "requested": "2099-01-01"}
    assert "2025-11-25" in error["message"]

    old_header = await post(
        gateway, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, **{"MCP-Protocol-Version": "2024-11-05"}
    )
    assert old_header.status_code == 400 and "2024-11-05" in old_header.json()["error"]["message"]

    handshake = await post(
        gateway,
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "initialize",
            "params": {"protocolVersion": "2025-03-26", "capabilities": {}},
        },
    )
    assert handshake.json()["result"]["protocolVersion"] == "2025-11-25"  # the spec's counter-offer

    # schema drift: the stdio server now serves read_ticket with another input schema
    drifted = servers_toml(gateway.tickets_url, gateway.auth_log.parent / "desk-stdio.expected").replace(
        f'"{SERVER}", "--require-token-file"', f'"{SERVER}", "--drift", "--require-token-file"'
    )
    await gateway.mesh.push_bundle(gateway.mesh.bundles.make(3, {**POLICIES}, mcp_servers=drifted))
    await wait_for_revision(gateway.mesh, 3, 1)
    async with gateway.client() as client:
        listed = [t.name for t in (await client.list_tools()).tools]
        with pytest.raises(MCPError) as info:
            await client.call_tool("desk.read_ticket", {"ticket_id": 1})
        fine = await client.call_tool("desk.close_ticket", {"ticket_id": 2, "reason": "done"})
    assert "desk.read_ticket" not in listed and "desk.close_ticket" in listed
    message = info.value.error.message
    assert (info.value.error.data or {})["kind"] == "tool_schema_drift"
    assert READ_TICKET in message and "44dd813b21f2b9b469c91eb954e7f90f0b2f631437cfeb73891e0863993f62a3" in message
    assert not fine.is_error


async def test_an_upstream_server_down_gives_a_clear_error_and_trips_its_breaker(gateway: Gateway) -> None:
    async with gateway.client() as client:
        await client.call_tool("tickets.read_ticket", {"ticket_id": 1})
        gateway.tickets.terminate()
        await asyncio.to_thread(gateway.tickets.wait, 10)
        messages = []
        for _ in range(3):
            with pytest.raises(MCPError) as info:
                await client.call_tool("tickets.read_ticket", {"ticket_id": 1})
            messages.append((info.value.error.data or {}).get("kind", ""))
            last = info.value.error
        still = await client.call_tool("desk.read_ticket", {"ticket_id": 5})  # the other server is unaffected
    assert messages == ["tool_server_unavailable", "tool_server_unavailable", "tool_circuit_open"]
    assert last.code == -32001 and "circuit open for MCP server tickets" in last.message
    assert not still.is_error


async def test_the_ledger_holds_every_call_and_nothing_visible_holds_a_credential_then_kill(gateway: Gateway) -> None:
    seen: list[str] = []
    async with gateway.client(headers={"x-meshwarden-session-id": "s-tools-1"}) as client:
        listed = await client.list_tools()
        seen.append(listed.model_dump_json())
        seen.append((await client.call_tool("tickets.read_ticket", {"ticket_id": 9})).model_dump_json())
        seen.append(
            (await client.call_tool("desk.close_ticket", {"ticket_id": 13, "reason": "cursed"})).model_dump_json()
        )
        with pytest.raises(MCPError) as denied:
            await client.call_tool("tickets.close_ticket", {"ticket_id": 9, "reason": "spam"})
        seen.append(str(denied.value.error))
    ledger: dict[str, object] = {}
    for _ in range(100):  # receipts reach the registry within a few shipping intervals
        ledger = json.loads(await cli(gateway.mesh, "tools", "ledger", "--session", "s-tools-1", "--output", "json"))
        if len(ledger["calls"]) >= 3:  # type: ignore[arg-type]
            break
        await asyncio.sleep(0.2)
    calls = {c["capability"]: c for c in ledger["calls"]}  # type: ignore[union-attr]
    read = calls["tickets.read_ticket"]
    assert read["call_kind"] == "tool" and read["tool_server"] == "tickets" and read["tool_name"] == "read_ticket"
    assert read["tool_risk"] == "read" and read["tool_schema_sha256"] == READ_TICKET
    assert read["policy_decision"] == "allow" and read["tool_result_class"] == "ok"
    assert read["caller_agent"] == "support" and read["arguments_sha256"].startswith("sha256:")
    assert calls["desk.close_ticket"]["tool_result_class"] == "tool_error"  # ticket 13 cannot be closed
    assert calls["tickets.close_ticket"]["policy_decision"] == "deny"
    denials = json.loads(await cli(gateway.mesh, "tools", "ledger", "--decision", "deny", "--output", "json"))
    assert [c["capability"] for c in denials["calls"]] == ["tickets.close_ticket"]
    table = await cli(gateway.mesh, "tools", "ledger", "--server", "tickets")
    assert "tickets.read_ticket" in table and "desk." not in table
    seen += [json.dumps(ledger), table, gateway.mesh.logs()]
    database = gateway.mesh.registry_data_dir / "registry.db"
    seen.append(database.read_bytes().decode("latin-1"))
    for wal in database.parent.glob("registry.db-wal"):
        seen.append(wal.read_bytes().decode("latin-1"))
    for text in seen:
        assert HTTP_SECRET not in text and STDIO_SECRET not in text
    # the server saw the sidecar's credential, never the agent's token
    reached = gateway.auth_log.read_text()
    assert f"Bearer {HTTP_SECRET}" in reached and AGENT_TOKEN not in reached

    # an operator's kill switch by tool, then by server, stops those calls (the real CLI)
    async with gateway.client() as client:
        await client.call_tool("tickets.read_ticket", {"ticket_id": 1})
        await cli(gateway.mesh, "kill", "--tool", "tickets.read_ticket", "--reason", "leaking ticket bodies")
        with pytest.raises(MCPError) as info:
            await client.call_tool("tickets.read_ticket", {"ticket_id": 1})
        other = await client.call_tool("desk.read_ticket", {"ticket_id": 1})
        await cli(gateway.mesh, "kill", "--mcp-server", "desk", "--reason", "desk maintenance")
        with pytest.raises(MCPError) as by_server:
            await client.call_tool("desk.close_ticket", {"ticket_id": 1, "reason": "x"})
    assert (info.value.error.data or {})["kind"] == "killed" and "leaking ticket bodies" in info.value.error.message
    assert "tool tickets.read_ticket" in info.value.error.message
    assert not other.is_error
    assert (by_server.value.error.data or {})["kind"] == "killed" and "mcp-server desk" in by_server.value.error.message


APPROVALS = {
    "tool-approvals.cedar": """
@id("close-with-approval")
@approval("closes a customer's ticket for good")
permit (principal, action == Action::"CallTool", resource == Tool::"tickets.close_ticket")
when { context.args has ticket_id && context.args.ticket_id < 900 };

@id("close-old-quickly")
@approval("closes an old ticket: decide within 2 s")
@approval_ttl_s("2")
permit (principal, action == Action::"CallTool", resource == Tool::"tickets.close_ticket")
when { context.args has ticket_id && context.args.ticket_id >= 900 };
""",
}


async def test_a_tool_call_waits_for_a_persons_approval_given_or_refused_with_the_real_cli(gateway: Gateway) -> None:
    servers = servers_toml(gateway.tickets_url, gateway.auth_log.parent / "desk-stdio.expected").replace(
        f'input_schema_sha256 = "{CLOSE_TICKET}"', f'input_schema_sha256 = "{CLOSE_TICKET}"\ncost_micro_usd = 250', 1
    )  # tickets.close_ticket is priced: each answered call costs 250 micro-USD
    await gateway.mesh.push_bundle(gateway.mesh.bundles.make(3, {**POLICIES, **APPROVALS}, mcp_servers=servers))
    await wait_for_revision(gateway.mesh, 3, 1)
    mesh = gateway.mesh
    async with gateway.client(headers={"x-meshwarden-session-id": "s-tool-approval"}) as client:
        # approved while the call waits: the call then goes through
        arguments = {"ticket_id": 21, "reason": "dup"}  # waits up to its own 120 s, not the sidecar's default
        waiting = asyncio.create_task(
            client.call_tool("tickets.close_ticket", arguments, meta={"meshwarden/timeout_s": 120})
        )
        held = await pending(mesh)
        [asked] = json.loads(await cli(mesh, "approvals", "list", "--output", "json"))
        assert asked["id"] == held.id and asked["call_kind"] == "tool" and asked["capability"] == "tickets.close_ticket"
        assert asked["arguments"] == {"ticket_id": 21, "reason": "dup"} and asked["agent"] == "support"
        shown = await cli(mesh, "approvals", "show", held.id)
        assert "closes a customer's ticket for good" in shown and "s-tool-approval" in shown
        assert not waiting.done()
        await cli(mesh, "approvals", "approve", held.id, "--reason", "customer asked twice")
        closed = await waiting
        assert not closed.is_error and "ticket 21 closed: dup" in closed.content[0].text  # type: ignore[union-attr]

        # denied while it waits: refused with the operator's reason
        denied_call = asyncio.create_task(client.call_tool("tickets.close_ticket", {"ticket_id": 22, "reason": "x"}))
        second = await pending(mesh)
        await cli(mesh, "approvals", "deny", second.id, "--reason", "ticket 22 is under legal hold")
        with pytest.raises(MCPError) as denied:
            await denied_call
        data = denied.value.error.data or {}
        assert denied.value.error.code == -32000 and data["kind"] == "approval_denied"
        assert data["decision"] == "denied" and data["approval_id"] == second.id
        assert "ticket 22 is under legal hold" in denied.value.error.message

        # nobody decides within the 2 s the policy gives: expired, which is a denial
        with pytest.raises(MCPError) as expired:
            await client.call_tool("tickets.close_ticket", {"ticket_id": 950, "reason": "old"})
        assert (expired.value.error.data or {})["decision"] == "expired"

        # without waiting: the id at once; the approval binds these exact arguments, once
        arguments = {"ticket_id": 23, "reason": "spam"}
        with pytest.raises(MCPError) as held_at_once:
            await client.call_tool("tickets.close_ticket", arguments, meta={"meshwarden/approval_wait": "none"})
        data = held_at_once.value.error.data or {}
        assert data["kind"] == "approval_pending" and data["approval_id"] in held_at_once.value.error.message
        approval_id = data["approval_id"]
        await cli(mesh, "approvals", "approve", approval_id, "--reason", "spam confirmed")
        with_id = {"meshwarden/approval_id": approval_id}
        with pytest.raises(MCPError) as replayed:  # the approval was for ticket 23, not 24
            await client.call_tool("tickets.close_ticket", {"ticket_id": 24, "reason": "spam"}, meta=with_id)
        assert (replayed.value.error.data or {})["decision"] == "mismatch"
        done = await client.call_tool("tickets.close_ticket", arguments, meta=with_id)
        assert "ticket 23 closed: spam" in done.content[0].text  # type: ignore[union-attr]
        with pytest.raises(MCPError) as again:
            await client.call_tool("tickets.close_ticket", arguments, meta=with_id)
        assert (again.value.error.data or {})["decision"] == "used"

    # the ledger and the session's timeline show each call's approval and what answered it
    ledger: dict[str, object] = {}
    for _ in range(100):
        ledger = json.loads(await cli(mesh, "tools", "ledger", "--session", "s-tool-approval", "--output", "json"))
        if len(ledger["calls"]) >= 7:  # type: ignore[arg-type]
            break
        await asyncio.sleep(0.2)
    decisions = sorted((c.get("approval_id", ""), c.get("approval_decision", "")) for c in ledger["calls"])  # type: ignore[union-attr]
    assert (held.id, "approved") in decisions and (second.id, "denied") in decisions
    assert (approval_id, "approved") in decisions and (approval_id, "used") in decisions
    assert (approval_id, "mismatch") in decisions and ("", "") not in decisions
    # the two calls the server answered cost the tool's price; the refused ones nothing
    charged = sorted(int(c.get("usage", {}).get("cost_micro_usd", 0)) for c in ledger["calls"])  # type: ignore[union-attr]
    assert charged == [0, 0, 0, 0, 0, 250, 250]
    timeline = await cli(mesh, "session", "show", "s-tool-approval")
    assert "(tool tickets.close_ticket)" in timeline and f"approval {held.id} approved" in timeline
    assert "(?)" not in timeline
