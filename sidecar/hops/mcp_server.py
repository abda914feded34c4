"""The last hop of a tool call: the MCP server the bundle declares, over the sidecar's own
connection to it (sidecar/hops/mcp_upstreams.py), with only the tool's name and arguments.

A server that speaks 2026-07-28 over HTTP gets the call as one POST (sidecar/hops/mcp_http_calls.py
says why), with the OAuth token the sidecar holds for a server behind OAuth; others through the
`mcp` client, and so does a call to an OAuth server while the sidecar holds no token it takes
(the client's OAuth flow gets one). The server's answer goes back as the JSON of its
CallToolResult, whatever it holds: a result
with `isError` is the tool's own failure (the call still worked) and is classed "tool_error"
for the receipt. A JSON-RPC error from the server about the arguments is the caller's to fix
(BadPayload); any other, or no answer, is the server's failure (ToolServerUnavailable, which
the server's breaker counts).

A call the server answered costs the tool's `cost_micro_usd` when the bundle gives one: the
Reply's usage carries it, so the budget stage settles to it (it reserved the same amount) and
receipts and cost tables count it. A call that got no answer costs nothing.
"""

from __future__ import annotations

import asyncio
import json
from typing import Final

from meshwarden.clock import Clock
from meshwarden.errors import BadPayload, DeadlineExceeded, MeshError, ToolServerUnavailable
from meshwarden.policy_bundle.mcp_servers import McpServers
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call, Reply, ToolUse
from meshwarden.sidecar.hops.http1_client import HttpClientError
from meshwarden.sidecar.hops.mcp_http_calls import TokenNeeded
from meshwarden.sidecar.hops.mcp_upstreams import McpConnection, McpUpstreams
from meshwarden.usage import Usage

INVALID_PARAMS: Final = -32602
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class ToMcpServer:
    def __init__(self, upstreams: McpUpstreams, policy: PolicyHolder, clock: Clock) -> None:
        self._upstreams, self._policy, self._clock = upstreams, policy, clock

    def _servers(self) -> McpServers:
        active = self._policy.active
        return active.mcp_servers if active is not None else McpServers()

    async def __call__(self, call: Call) -> Reply:
        from mcp.shared.exceptions import MCPError  # loaded by the connection already; not at start (~40 MB)

        tool = call.record.tool
        server = self._servers().servers.get(tool.server) if tool is not None else None
        if tool is None or server is None:  # the tool check always sets it; a bundle swap may drop it
            raise ToolServerUnavailable(f"MCP server for {call.capability} is no longer declared by the active bundle")
        connection = self._upstreams.connection(server)
        timeout_s = min(server.timeout_s, call.deadline - self._clock.monotonic())
        try:
            client = await connection.client()
            if connection.http_calls is not None:
                try:
                    return await self._post(call, tool, connection, timeout_s, server.timeout_s)
                except TokenNeeded:  # the `mcp` client's OAuth flow gets one; later calls take the POST again
                    timeout_s = min(server.timeout_s, call.deadline - self._clock.monotonic())
            async with asyncio.timeout(timeout_s):
                result = await client.call_tool(tool.tool, json.loads(call.payload) if call.payload else {})
        except MCPError as exc:
            if exc.code == INVALID_PARAMS:
                raise BadPayload(f"MCP server {tool.server} refused the arguments of {tool.tool}: {exc}") from exc
            raise ToolServerUnavailable(
                f"MCP server {tool.server} failed on {tool.tool} (JSON-RPC error {exc.code}): {exc}"
            ) from exc
        except TimeoutError as exc:
            if timeout_s < server.timeout_s:
                raise DeadlineExceeded(f"{call.capability} did not answer within the caller's deadline") from exc
            raise ToolServerUnavailable(
                f"MCP server {tool.server} did not answer {tool.tool} within its timeout of {server.timeout_s:g} s"
            ) from exc
        except MeshError:  # said by the POST path already (the arguments refused, the deadline, the server)
            raise
        except Exception as exc:  # the transport failed: the server is down or the connection broke
            await connection.broken(exc)
            raise ToolServerUnavailable(
                f"MCP server {tool.server} could not be reached for {tool.tool}: {type(exc).__name__}; "
                "check that it runs"
            ) from exc
        call.record.tool_result_class = "tool_error" if result.is_error else "ok"
        body = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        return Reply(result=_ENCODER.encode(body).encode(), instance_id="", agent="", version="", usage=_priced(tool))

    async def _post(
        self, call: Call, tool: ToolUse, connection: McpConnection, timeout_s: float, server_timeout_s: float
    ) -> Reply:
        http = connection.http_calls
        if http is None:  # the connection dropped since the caller looked
            raise ToolServerUnavailable(f"MCP server {tool.server}: the connection closed; try again")
        try:
            answer = await http.call(tool.tool, call.payload, timeout_s)
        except TimeoutError as exc:
            if timeout_s < server_timeout_s:
                raise DeadlineExceeded(f"{call.capability} did not answer within the caller's deadline") from exc
            raise ToolServerUnavailable(
                f"MCP server {tool.server} did not answer {tool.tool} within its timeout of {server_timeout_s:g} s"
            ) from exc
        except (HttpClientError, OSError) as exc:  # no connection, the connection cut, an answer too large
            await connection.broken(exc)
            raise ToolServerUnavailable(
                f"MCP server {tool.server} could not be reached for {tool.tool}: {type(exc).__name__}; check that it runs"
            ) from exc
        if answer.error_code == INVALID_PARAMS:
            raise BadPayload(f"MCP server {tool.server} refused the arguments of {tool.tool}: {answer.error_message}")
        if answer.error_code:
            raise ToolServerUnavailable(
                f"MCP server {tool.server} failed on {tool.tool} (JSON-RPC error {answer.error_code}): "
                f"{answer.error_message}"
            )
        call.record.tool_result_class = "tool_error" if answer.is_error else "ok"
        return Reply(result=answer.result, instance_id="", agent="", version="", usage=_priced(tool))


def _priced(tool: ToolUse) -> Usage | None:
    """What an answered call costs: the bundle's price per call of the tool (None: no price)."""
    return Usage(cost_micro_usd=tool.cost_micro_usd) if tool.cost_micro_usd else None
