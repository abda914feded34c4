"""An MCP server behind OAuth client credentials, through real processes: an authorization
server stand-in speaking RFC 6749 §4.4 as documented (tests/integration/oauth_token_server.py),
the tickets MCP server protecting itself with the `mcp` package's own server auth (it checks
tokens at the stand-in's introspection endpoint), a real sidecar holding the client secret, and
the official `mcp` client as the agent.

The sidecar obtains a token on its first call, keeps it for the calls after, gets a new one
when the server refuses the old one (401) and when the old one's announced lifetime ends, and
puts it on each request to the server; the client secret and the tokens reach nothing the agent
or an operator sees: answers, errors, receipts, the registry's database, the logs."""

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
from mcp.shared.exceptions import MCPError

from meshwarden.supervise import Child
from tests.integration.mesh import LocalMesh
from tests.integration.test_controls import cli
from tests.integration.test_mcp_gateway import AGENT_TOKEN, READ_TICKET, SERVER, Gateway
from tests.integration.test_policy import wait_for_revision

pytestmark = pytest.mark.integration

TOKEN_SERVER = Path(__file__).parent / "oauth_token_server.py"
CLIENT_ID = "meshwarden-support"
CLIENT_SECRET = "oauth-client-secret-" + "k" * 28
WRONG_SECRET = "oauth-wrong-secret-" + "w" * 28
POLICIES = {
    "tools.cedar": '@id("read-tools")\npermit (principal, action == Action::"CallTool", resource) '
    'when { resource.risk == "read" };\n'
}


def servers_toml(url: str, issuer: str) -> str:
    """The same server twice: with the right client secret, and with a wrong one."""
    return "".join(
        f"""
[servers.{name}]
url = "{url}"
credential = {{ name = "{secret}", scheme = "oauth_client_credentials", issuer = "{issuer}", client_id = "{CLIENT_ID}", scope = "tickets.read" }}
[servers.{name}.tools.read_ticket]
risk = "read"
input_schema_sha256 = "{READ_TICKET}"
"""
        for name, secret in (("tickets", "tickets-oauth"), ("wrongly", "wrong-oauth"))
    )


def start(argv: list[str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("ready "), line
    return process, line.split()[1]


@dataclass
class OAuth:
    gateway: Gateway
    issuer: str
    issued_log: Path  # the stand-in's token requests, one JSON line each
    auth_log: Path  # the Authorization header of each request that reached the MCP server

    def issued(self) -> list[str]:
        lines = self.issued_log.read_text().splitlines() if self.issued_log.exists() else []
        return [e["token"] for e in map(json.loads, lines) if e["event"] == "issued"]

    def reached(self) -> list[str]:
        return self.auth_log.read_text().splitlines()

    async def control(self, path: str) -> None:
        async with httpx2.AsyncClient(timeout=10) as http:
            (await http.post(f"{self.issuer}{path}")).raise_for_status()


@pytest.fixture
async def oauth(mesh: LocalMesh, tmp_path: Path) -> AsyncIterator[OAuth]:
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(CLIENT_SECRET)
    issued_log, auth_log = tmp_path / "token-requests.jsonl", tmp_path / "tickets-auth.log"
    token_argv = [str(TOKEN_SERVER), "--client-id", CLIENT_ID, "--client-secret-file", str(secret_file)]
    token_server, issuer = await asyncio.to_thread(
        start, [*token_argv, "--scope", "tickets.read", "--log", str(issued_log)]
    )
    tickets, url = await asyncio.to_thread(
        start,
        [str(SERVER), "--http", "0", "--oauth-issuer", issuer, "--oauth-scope", "tickets.read"]
        + ["--log-auth", str(auth_log)],
    )
    try:
        secrets = tmp_path / "tool-credentials"
        secrets.mkdir(mode=0o700)
        for name, value in (("tickets-oauth", CLIENT_SECRET), ("wrong-oauth", WRONG_SECRET)):
            (secrets / name).write_text(value)
            os.chmod(secrets / name, 0o600)
        token_file = tmp_path / "agent-token"
        token_file.write_text(AGENT_TOKEN)
        os.chmod(token_file, 0o600)
        await mesh.push_bundle(mesh.bundles.make(2, POLICIES, mcp_servers=servers_toml(url, issuer)))
        side: Child = await mesh.sidecar(
            "support",
            *("--api-token-file", str(token_file), "--tool-credentials-dir", str(secrets)),
            *("--receipt-ship-interval-s", "0.2"),
        )
        await wait_for_revision(mesh, 2, 1)
        gateway = Gateway(mesh, side, f"http://{side.addresses['gateway']}/mcp", tickets, url, auth_log)
        yield OAuth(gateway, issuer, issued_log, auth_log)
    finally:
        for process in (tickets, token_server):
            process.terminate()
            await asyncio.to_thread(process.wait, 10)


async def test_the_sidecar_gets_keeps_and_renews_a_token_and_nobody_else_sees_it(oauth: OAuth) -> None:
    seen: list[str] = []
    async with oauth.gateway.client(headers={"x-meshwarden-session-id": "s-oauth"}) as client:
        seen.append((await client.list_tools()).model_dump_json())
        for ticket in (1, 2, 3):
            result = await client.call_tool("tickets.read_ticket", {"ticket_id": ticket})
            assert not result.is_error and f"ticket {ticket}:" in result.content[0].text  # type: ignore[union-attr]
            seen.append(result.model_dump_json())
        # obtained once, kept: one token for the listing and three calls, on every request that was let in
        [first] = oauth.issued()
        assert oauth.reached()[-1] == f"Bearer {first}"

        # the server stops accepting it (401): the sidecar gets a new one, and the call goes through
        await oauth.control("/test/revoke-all")
        calls_before = len(oauth.reached())
        after_revoke = await client.call_tool("tickets.read_ticket", {"ticket_id": 4})
        assert not after_revoke.is_error
        [_, second] = oauth.issued()
        since = oauth.reached()[calls_before:]
        assert since[0] == f"Bearer {first}" and since[-1] == f"Bearer {second}"

        # its announced lifetime ends (the server would still take it): the sidecar renews it first,
        # never sending the expired one again
        await oauth.control("/test/announce?expires_in=1")
        await oauth.control("/test/revoke-all")
        await client.call_tool("tickets.read_ticket", {"ticket_id": 5})
        third = oauth.issued()[2]
        await asyncio.sleep(1.5)  # past the third token's announced lifetime of 1 s
        calls_before = len(oauth.reached())
        renewed = await client.call_tool("tickets.read_ticket", {"ticket_id": 6})
        assert not renewed.is_error and len(oauth.issued()) == 4
        since = oauth.reached()[calls_before:]
        assert f"Bearer {third}" not in since and since[-1] == f"Bearer {oauth.issued()[3]}"
        seen.append(renewed.model_dump_json())

        # a wrong client secret: a clear error naming the server and the token endpoint's answer
        with pytest.raises(MCPError) as refused:
            await client.call_tool("wrongly.read_ticket", {"ticket_id": 1})
        seen.append(refused.value.error.model_dump_json())
    error = refused.value.error
    assert error.code == -32001 and (error.data or {})["kind"] == "tool_server_unavailable"
    assert f"MCP server wrongly: the sidecar got no OAuth token from {oauth.issuer}" in error.message
    assert "invalid_client" in error.message and "'wrong-oauth'" in error.message  # which secret to check
    assert "Traceback" not in oauth.gateway.mesh.logs()  # an expected refusal, said once, plainly

    ledger: dict[str, object] = {}
    for _ in range(100):  # receipts reach the registry within a few shipping intervals
        ledger = json.loads(
            await cli(oauth.gateway.mesh, "tools", "ledger", "--session", "s-oauth", "--output", "json")
        )
        if len(ledger["calls"]) >= 7:  # type: ignore[arg-type]
            break
        await asyncio.sleep(0.2)
    assert len(ledger["calls"]) == 7  # type: ignore[arg-type]
    seen += [json.dumps(ledger), oauth.gateway.mesh.logs()]
    database = oauth.gateway.mesh.registry_data_dir / "registry.db"
    for path in (database, *database.parent.glob("registry.db-wal")):
        seen.append(path.read_bytes().decode("latin-1"))
    for path in (oauth.gateway.mesh.workdir / "sidecars").rglob("*"):  # the sidecar's spool and identity
        if path.is_file():
            seen.append(path.read_bytes().decode("latin-1"))
    tokens = oauth.issued()
    for text in seen:
        assert CLIENT_SECRET not in text and WRONG_SECRET not in text
        assert not any(token in text for token in tokens)
    # the MCP server saw tokens only: never the client secret, never the agent's own token
    reached = "\n".join(oauth.reached())
    assert CLIENT_SECRET not in reached and AGENT_TOKEN not in reached
