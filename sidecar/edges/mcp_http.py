"""The agent's MCP endpoint (`/mcp` on the HTTP gateway): one MCP server made of the tools of
every MCP server the bundle lets the agent use, named `server.tool`.

`tools/list` asks each declared server for its tools and shows those the bundle declares, whose
live input schema is the declared one, and that Cedar may permit this agent to call.
`tools/call` becomes a `Call` of kind "tool" and goes through the tool pipeline
(sidecar/pipeline.py: the same outer stages as every call, then the MCP server).

Why a JSON-RPC handler of our own rather than the `mcp` package's server classes: those run
as an ASGI (Starlette) app with a session manager, task groups and pydantic models per
message, beside the gateway's aiohttp server; the endpoint needs four methods, no state, and
the pipeline between each call and its server, so a plain handler on aiohttp keeps one server,
one error shape (JSON-RPC) and well under a millisecond per call. The `mcp` package is still
the client everywhere: upstream here, and in the tests downstream.

Attribution: `x-meshwarden-session-id`, `-workflow-id`, `-task-id`, `-parent-call-id` and
`-on-behalf-of` headers, or the same under `_meta` as `meshwarden/session_id`,
`meshwarden/workflow_id`, `meshwarden/task_id`, `meshwarden/parent_call_id`,
`meshwarden/on_behalf_of` (which win: they are per request). At a session's entry point,
`x-meshwarden-session-labels: repository=acme/api,resource=db-prod` names what the session
works on (meshwarden.session_labels; a bad one is a JSON-RPC invalid-params error). A call
made for a task carries the task's signed fencing token in `x-meshwarden-task-token`
(sidecar.edges.task_claim); the task_fence stage refuses a stale one ("lease lost").
Approvals, as for agent calls: `x-meshwarden-approval-wait: none` (or `_meta`
`meshwarden/approval_wait`) answers a call held for a person's approval at once with its id,
and `x-meshwarden-approval-id` (or `meshwarden/approval_id`) retries it with the approval given.
A call's deadline is `--default-timeout-s` unless `x-meshwarden-timeout-s` (or `_meta`
`meshwarden/timeout_s`) gives seconds (at most MAX_TIMEOUT_S): a call that waits for a person's
approval waits that long.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from aiohttp import web

from meshwarden import session_labels, strict_json
from meshwarden.errors import (
    BadPayload,
    MeshError,
    PayloadTooLarge,
    Refused,
    UnknownTool,
    Unreachable,
)
from meshwarden.names import QUALIFIED_TOOL, QUALIFIED_TOOL_RULE
from meshwarden.session_labels import Labels
from meshwarden.sidecar.call import Call, Caller, Handler
from meshwarden.sidecar.edges.gateway_http import RouteFamily
from meshwarden.sidecar.edges.mcp_protocol import (
    CURRENT,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MESH_REFUSED,
    MESH_UNREACHABLE,
    METHOD_NOT_FOUND,
    MODERN_VERSIONS,
    PARSE_ERROR,
    PREVIOUS,
    SERVER_INFO_META,
    UNAUTHORIZED,
    Era,
    RpcError,
    era_of,
    error_body,
    modern_result,
    negotiated,
    raw_result_body,
    result_body,
)
from meshwarden.sidecar.edges.task_claim import BadTaskToken, task_token
from meshwarden.sidecar.policy import Caller as PolicyCaller
from meshwarden.sidecar.policy import CallFacts
from meshwarden.sidecar.runtime import Runtime
from meshwarden.sidecar.wire import approval_headers

log = logging.getLogger(__name__)

PREFIX: Final = "/mcp"
SERVER_INFO: Final = {"name": "meshwarden-sidecar", "version": "1"}
CAPABILITIES: Final = {"tools": {"listChanged": False}}
ATTRIBUTION: Final = ("session_id", "workflow_id", "task_id", "parent_call_id", "on_behalf_of")
MAX_ID_CHARS: Final = 128
LIST_TIMEOUT_S: Final = 10.0
MAX_TIMEOUT_S: Final = 3600.0  # a call's own deadline (meshwarden/timeout_s), an hour at most
TIMEOUT_HEADER: Final = (
    "x-meshwarden-timeout-s"  # a server that does not list its tools in time is left out of tools/list
)
_ID: Final = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces
_FALLBACK_ERA: Final = Era(PREVIOUS, False)

_Method = Callable[[Era, Mapping[str, object], web.Request], Awaitable[object]]


class McpEndpoint:
    def __init__(self, rt: Runtime, tools: Handler) -> None:
        self._rt, self._tools = rt, tools
        self._methods: dict[str, _Method] = {
            "initialize": self._initialize,
            "server/discover": self._discover,
            "ping": self._ping,
            "tools/list": self._list,
            "tools/call": self._call,
        }

    async def post(self, request: web.Request) -> web.Response:
        body = await request.read()  # bounded by the gateway (413 in this family's shape)
        request_id: object = None
        era = _FALLBACK_ERA
        try:
            message = _message(body)
            if "method" not in message:  # a response or error to nothing this endpoint asked
                return web.Response(status=202)
            method, params = _method_and_params(message)
            if "id" not in message:  # a notification (notifications/initialized, cancelled, ...)
                return web.Response(status=202)
            request_id = message["id"]
            if isinstance(request_id, bool) or not isinstance(request_id, (str, int)) or len(str(request_id)) > 256:
                request_id = None
                raise RpcError(
                    INVALID_REQUEST, "the request id must be a string (at most 256 characters) or an integer"
                )
            era = era_of(method, params, request.headers)
            handler = self._methods.get(method)
            if handler is None or (method == "server/discover" and not era.modern):
                raise RpcError(
                    METHOD_NOT_FOUND,
                    f"Method not found: {method[:100]!r}; this MCP endpoint serves tools only: "
                    "initialize, server/discover, ping, tools/list, tools/call",
                )
            result = await handler(era, params, request)
        except RpcError as err:
            return _json(error_body(request_id, err), err.http_status(era))
        if isinstance(result, bytes):
            return _json(raw_result_body(request_id, result), 200)
        return _json(result_body(request_id, result if isinstance(result, dict) else {}), 200)

    async def _initialize(self, era: Era, params: Mapping[str, object], request: web.Request) -> object:
        return {
            "protocolVersion": negotiated(params.get("protocolVersion")),
            "capabilities": CAPABILITIES,
            "serverInfo": SERVER_INFO,
            "instructions": "Tools of the MCP servers this agent may use, named SERVER.TOOL, through its meshwarden sidecar.",
        }

    async def _discover(self, era: Era, params: Mapping[str, object], request: web.Request) -> object:
        return modern_result(
            {
                "supportedVersions": list(MODERN_VERSIONS),
                "capabilities": CAPABILITIES,
                "_meta": {SERVER_INFO_META: SERVER_INFO},
            }
        )

    async def _ping(self, era: Era, params: Mapping[str, object], request: web.Request) -> object:
        return modern_result({}) if era.modern else {}

    async def _list(self, era: Era, params: Mapping[str, object], request: web.Request) -> object:
        active = self._rt.policy.active
        listed: list[dict[str, object]] = []
        if active is not None:
            attribution = _attribution(request, era)
            facts = CallFacts(
                now_unix_s=int(self._rt.clock.wall()),
                session_id=attribution["session_id"],
                workflow_id=attribution["workflow_id"],
            )
            caller = PolicyCaller(self._rt.local.name, self._rt.local.spiffe_id)
            servers = list(active.mcp_servers.servers.values())
            connections = [self._rt.mcp_upstreams.connection(s) for s in servers]
            found = await asyncio.gather(
                *(asyncio.wait_for(c.refresh_tools(), LIST_TIMEOUT_S) for c in connections), return_exceptions=True
            )
            for server, live in zip(servers, found, strict=True):
                if isinstance(live, BaseException):
                    log.warning("tools/list: MCP server %s left out: %s", server.name, live)
                    continue
                for name, declared in server.tools.items():
                    tool = live.get(name)
                    if tool is None or tool.schema_sha256 != declared.input_schema_sha256:
                        continue  # not served, or drifted: tools/call says which
                    if not active.tool_visible(caller, declared, facts):
                        continue
                    listed.append({**tool.definition, "name": declared.qualified})
        return modern_result({"tools": listed}) if era.modern else {"tools": listed}

    async def _call(self, era: Era, params: Mapping[str, object], request: web.Request) -> object:
        name = params.get("name")
        if not isinstance(name, str) or not QUALIFIED_TOOL.fullmatch(name):
            raise RpcError(
                INVALID_PARAMS,
                f"Unknown tool {str(name)[:200]!r}: tools on this endpoint are named {QUALIFIED_TOOL_RULE} "
                "(see tools/list)",
            )
        arguments = params.get("arguments", {})
        if not isinstance(arguments, dict):
            raise RpcError(INVALID_PARAMS, f"the arguments of {name} must be a JSON object")
        attribution = _attribution(request, era)
        try:
            token = task_token(request.headers)  # checked by the task_fence stage
        except BadTaskToken as exc:
            raise RpcError(INVALID_PARAMS, str(exc)) from None
        approval = _approval_options(request, era)
        local = self._rt.local
        call = Call(
            call_id=uuid.uuid4().hex,
            capability=name,
            payload=json.dumps(arguments, separators=(",", ":"), ensure_ascii=False).encode(),
            caller=Caller(local.name, local.instance_id, local.spiffe_id),
            deadline=self._rt.clock.monotonic() + _timeout_s(request, era, self._rt.config.default_timeout_s),
            session_id=attribution["session_id"],
            workflow_id=attribution["workflow_id"],
            parent_call_id=attribution["parent_call_id"],
            on_behalf_of=attribution["on_behalf_of"],
            session_labels=_session_labels(request.headers),
            traceparent=request.headers.get("traceparent", "")[:256],
            tracestate=request.headers.get("tracestate", "")[:512],
            kind="tool",
            task_token=token,
            approval_id=approval.approval_id,
            approval_wait=approval.wait,
        )
        try:
            reply = await self._tools(call)
        except MeshError as err:
            raise _rpc_error(err) from None
        except Exception:  # a bug: log everything, reveal nothing
            log.exception("unexpected failure on tool call %s (%s)", call.call_id, name)
            raise RpcError(INTERNAL_ERROR, f"sidecar fault; report call {call.call_id}") from None
        return reply.result


def _message(body: bytes) -> dict[str, object]:
    try:
        message = strict_json.loads(body)  # no NaN, no nesting deep enough to exhaust the stack
    except ValueError as exc:
        raise RpcError(
            PARSE_ERROR, f"Parse error: the body is not JSON ({exc}); send one JSON-RPC 2.0 request"
        ) from exc
    if isinstance(message, list):
        raise RpcError(
            INVALID_REQUEST,
            "JSON-RPC batches are not supported (MCP removed them in 2025-06-18); send one request per POST",
        )
    if not isinstance(message, dict):
        raise RpcError(INVALID_REQUEST, "Invalid Request: the body must be a JSON-RPC request object")
    if message.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"')
    return message


def _method_and_params(message: Mapping[str, object]) -> tuple[str, Mapping[str, object]]:
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise RpcError(INVALID_REQUEST, 'Invalid Request: "method" must be a non-empty string')
    params = message.get("params", {})
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, f"the params of {method[:100]!r} must be a JSON object")
    return method, params


def _attribution(request: web.Request, era: Era) -> dict[str, str]:
    """Session, workflow, task and parent call, from `_meta` or else the request's headers."""
    found: dict[str, str] = {}
    for key in ATTRIBUTION:
        value = era.meta.get(f"meshwarden/{key}")
        if value is None:
            value = request.headers.get(f"x-meshwarden-{key.replace('_', '-')}", "")
        if not isinstance(value, str) or (value and not _ID.fullmatch(value)):
            raise RpcError(INVALID_PARAMS, f"{key} must be 1-{MAX_ID_CHARS} printable ASCII characters without spaces")
        found[key] = value
    return found


def _session_labels(headers: Mapping[str, str]) -> Labels:
    """The session's free labels from x-meshwarden-session-labels (key=value,key=value)."""
    try:
        return session_labels.from_header(headers.get(session_labels.HEADER, ""))
    except session_labels.InvalidLabels as exc:
        raise RpcError(INVALID_PARAMS, exc.message, data={"kind": "bad_session_labels", "label": exc.label}) from None


def _timeout_s(request: web.Request, era: Era, default_s: float) -> float:
    """The call's own time, from `_meta` or else the request's header; `default_s` when none."""
    value = era.meta.get("meshwarden/timeout_s")
    if value is None:
        header = request.headers.get(TIMEOUT_HEADER)
        if header is None:
            return default_s
        try:
            value = float(header)
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT_S:
        raise RpcError(
            INVALID_PARAMS,
            f"meshwarden/timeout_s ({TIMEOUT_HEADER}) must be a number of seconds above 0 and at most "
            f"{MAX_TIMEOUT_S:g}",
        )
    return float(value)


def _approval_options(request: web.Request, era: Era) -> approval_headers.ApprovalOptions:
    """The agent's say about approvals, from `_meta` or else the request's headers."""
    found: list[tuple[str, str]] = []
    for header, key in ((approval_headers.WAIT_HEADER, "approval_wait"), (approval_headers.ID_HEADER, "approval_id")):
        value = era.meta.get(f"meshwarden/{key}")
        if value is None:
            value = request.headers.get(header, "")
        if not isinstance(value, str):
            raise RpcError(INVALID_PARAMS, f"_meta meshwarden/{key} must be a string")
        found.append((header, value))
    try:
        return approval_headers.from_metadata(found)
    except BadPayload as err:
        raise RpcError(INVALID_PARAMS, err.message, data={"kind": err.kind}) from None


def _rpc_error(err: MeshError) -> RpcError:
    data: dict[str, object] = {**err.metadata(), "kind": err.kind}  # the error's data, as on the gRPC wire
    if isinstance(err, (BadPayload, UnknownTool, PayloadTooLarge)):
        return RpcError(INVALID_PARAMS, err.message, data=data)
    if isinstance(err, Unreachable):
        return RpcError(MESH_UNREACHABLE, err.message, data=data)
    if isinstance(err, Refused):
        return RpcError(MESH_REFUSED, err.message, data=data)
    return RpcError(MESH_REFUSED, err.message, data=data)


def _json(body: bytes, status: int) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


def _refuse(status: int, message: str) -> web.Response:
    """The gateway's own refusals (token, body size) as JSON-RPC errors."""
    code = UNAUTHORIZED if status == 401 else INVALID_REQUEST
    response = _json(error_body(None, RpcError(code, message)), status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="meshwarden-sidecar"'
    return response


async def _no_stream(request: web.Request) -> web.Response:
    """No server-initiated stream (GET) and no sessions to end (DELETE): 405, as the spec allows."""
    return web.Response(
        status=405,
        headers={"Allow": "POST"},
        text=f"this MCP endpoint ({CURRENT}, {PREVIOUS}) answers each POST and holds no stream or session",
    )


def family(rt: Runtime, tools: Handler) -> RouteFamily:
    endpoint = McpEndpoint(rt, tools)
    return RouteFamily(
        name="mcp",
        prefix=PREFIX,
        routes=[web.post(PREFIX, endpoint.post), web.get(PREFIX, _no_stream), web.delete(PREFIX, _no_stream)],
        refuse=_refuse,
        on_stop=(rt.mcp_upstreams.close,),
    )
