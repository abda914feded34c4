"""The gRPC face of the tool-call ledger (meshwarden.v1.Tools): operators ask which MCP tool
calls happened, filtered by agent, tool, server, session, policy decision and time. Checked
here (lengths, names, window), answered by the receipt store (registry.store)."""

from __future__ import annotations

from typing import Any, Final

import grpc

from meshwarden.clock import Clock
from meshwarden.names import AGENT_NAME, MCP_SERVER_NAME, QUALIFIED_TOOL
from meshwarden.registry.authz import Authorizer, Caller, method
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.receipts import Receipts, ToolCallQuery
from meshwarden.registry.rescue import serve_unary_async
from meshwarden.registry.store.receipt_columns import seconds
from meshwarden.v1 import tools_pb2, tools_pb2_grpc

SERVICE_NAME: Final[str] = tools_pb2.DESCRIPTOR.services_by_name["Tools"].full_name
LIST_TOOL_CALLS: Final = method(SERVICE_NAME, "ListToolCalls")
DEFAULT_WINDOW_S: Final = 24 * 3600.0
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
MAX_ID_CHARS: Final = 128

Context = grpc.aio.ServicerContext[Any, Any]


class ToolLedgerService(tools_pb2_grpc.ToolsServicer):
    def __init__(self, receipts: Receipts, authorizer: Authorizer, clock: Clock) -> None:
        self._receipts, self._authorizer, self._clock = receipts, authorizer, clock

    async def ListToolCalls(
        self, request: tools_pb2.ListToolCallsRequest, context: Context
    ) -> tools_pb2.ListToolCallsResponse:
        return await serve_unary_async(LIST_TOOL_CALLS, self._list, request, context, self._authorizer)

    async def _list(self, request: tools_pb2.ListToolCallsRequest, _caller: Caller) -> tools_pb2.ListToolCallsResponse:
        found, truncated = await self._receipts.tool_calls(self.query(request))
        return tools_pb2.ListToolCallsResponse(receipts=found, truncated=truncated)

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
        until = seconds(request.until) if request.HasField("until") else self._clock.wall() + 1
        since = seconds(request.since) if request.HasField("since") else until - DEFAULT_WINDOW_S
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
        )
