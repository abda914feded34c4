"""The tool-call ledger's RPC (meshwarden.v1.Tools): operators ask which MCP tool calls
happened, filtered by agent, tool, server, session, policy decision and time. Checked here
(lengths, names, window), answered by the receipt store (registry.store). Authorized by the
interceptor (registry.api.authorization) from registry.authz's table."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

import grpc
from google.protobuf import timestamp_pb2

from meshwarden.clock import Clock
from meshwarden.names import AGENT_NAME, MCP_SERVER_NAME, QUALIFIED_TOOL
from meshwarden.registry import keyset
from meshwarden.registry.api.service import Handler
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.receipts import Receipts, ToolCallQuery
from meshwarden.v1 import tools_pb2

DEFAULT_WINDOW_S: Final = 24 * 3600.0
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
MAX_ID_CHARS: Final = 128

Context = grpc.aio.ServicerContext[Any, Any]


class ToolsApi:
    def __init__(self, receipts: Receipts, clock: Clock) -> None:
        self._receipts, self._clock = receipts, clock

    def handlers(self) -> Mapping[str, Handler]:
        return {"ListToolCalls": self.ListToolCalls}

    async def ListToolCalls(self, request: tools_pb2.ListToolCallsRequest, _: Context) -> bytes:
        found, truncated = await self._receipts.tool_calls(self.query(request))
        last = found[-1] if truncated and found else None
        next_cursor = keyset.encode(_seconds(last.started_at), last.sidecar_instance_id, last.seq) if last else ""
        # Up to MAX_LIMIT receipts, each with its kept arguments: encoded in a worker thread
        # (registry.api.service takes the bytes as the response).
        return await asyncio.to_thread(
            lambda: tools_pb2.ListToolCallsResponse(
                receipts=found, truncated=truncated, next_cursor=next_cursor
            ).SerializeToString()
        )

    def query(self, request: tools_pb2.ListToolCallsRequest) -> ToolCallQuery:
        if request.agent and not AGENT_NAME.fullmatch(request.agent):
            raise InvalidInput("agent", f"{request.agent[:80]!r} is not an agent name")
        if request.tool and not QUALIFIED_TOOL.fullmatch(request.tool):
            raise InvalidInput("tool", f"{request.tool[:200]!r} is not SERVER.TOOL")
        if request.server and not MCP_SERVER_NAME.fullmatch(request.server):
            raise InvalidInput("server", f"{request.server[:80]!r} is not an MCP server name")
        if len(request.session_id) > MAX_ID_CHARS:
            raise InvalidInput("session_id", f"is {len(request.session_id)} characters; at most {MAX_ID_CHARS}")
        if request.decision not in ("", "allow", "deny"):
            raise InvalidInput("decision", f"is {request.decision[:20]!r}; give allow or deny")
        if request.limit > MAX_LIMIT:
            raise InvalidInput("limit", f"is {request.limit}; at most {MAX_LIMIT}")
        until = _seconds(request.until) if request.HasField("until") else self._clock.wall() + 1
        since = _seconds(request.since) if request.HasField("since") else until - DEFAULT_WINDOW_S
        if until <= since:
            raise InvalidInput("until", "is not after since; give a window that ends after it starts")
        return ToolCallQuery(
            since=since,
            until=until,
            limit=request.limit or DEFAULT_LIMIT,
            agent=request.agent,
            tool=request.tool,
            server=request.server,
            session_id=request.session_id,
            decision=request.decision,
            after=_after(request.cursor),
        )


def _after(cursor: str) -> tuple[float, str, int] | None:
    if not cursor:
        return None
    at, chain, seq = keyset.decode(cursor, float, str, int)
    return float(at), str(chain), int(seq)


def _seconds(timestamp: timestamp_pb2.Timestamp) -> float:
    return float(timestamp.seconds) + timestamp.nanos / 1e9
