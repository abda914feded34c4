"""`tools/call` to a streamable HTTP server that speaks MCP 2026-07-28, as one aiohttp POST.

Why not the `mcp` client for this one request: measured on this machine (benchmarks/README.md,
"tool_gateway.py"), its call path (anyio memory streams, a task per request, pydantic
validation of the result, then our re-encoding) cost about 15 ms per call more than a plain
POST, against a goal of 1 ms for the whole gateway. At 2026-07-28 a call is a self-contained
POST (no session, no handshake), so the sidecar can send it itself: the arguments go as the
agent sent them, the result comes back as the server wrote it. The `mcp` client still
connects, discovers the revision, lists the tools (drift) and carries every call to stdio
servers and to servers of the revision before.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp

PROTOCOL: Final = "2026-07-28"
_META: Final = (
    b'"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
    b'"io.modelcontextprotocol/clientCapabilities":{},'
    b'"io.modelcontextprotocol/clientInfo":{"name":"meshwarden-sidecar","version":"1"}}'
)


@dataclass(frozen=True, slots=True)
class CallAnswer:
    result: bytes  # the result object as JSON ("" when `error_code` is set)
    is_error: bool  # the tool's own failure (`isError`)
    error_code: int = 0  # a JSON-RPC error instead of a result
    error_message: str = ""


class HttpToolCaller:
    """POSTs tools/call to one server, with the sidecar's headers (its credential)."""

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        self._url = url
        self._headers = {
            **headers,
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": PROTOCOL,
            "Mcp-Method": "tools/call",
        }
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    async def call(self, tool: str, arguments_json: bytes, timeout_s: float) -> CallAnswer:
        """Raises aiohttp.ClientError (or TimeoutError) when the server cannot be reached."""
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        request_id = next(self._ids)
        body = b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%s,"arguments":%s,%s}}' % (
            request_id,
            json.dumps(tool).encode(),
            arguments_json or b"{}",
            _META,
        )
        async with self._session.post(
            self._url,
            data=body,
            headers={**self._headers, "Mcp-Name": tool},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            raw = await response.read()
            content_type = response.headers.get("Content-Type", "")
        message = _sse_message(raw, request_id) if content_type.startswith("text/event-stream") else _json(raw)
        error = message.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            return CallAnswer(
                b"", False, code if isinstance(code, int) else -32603, str(error.get("message", ""))[:500]
            )
        result = message.get("result")
        if not isinstance(result, dict):
            return CallAnswer(b"", False, -32603, f"the server answered HTTP {response.status} without a result")
        encoded = json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode()
        return CallAnswer(encoded, bool(result.get("isError")))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _json(raw: bytes) -> dict[str, object]:
    try:
        message = json.loads(raw)
    except ValueError:
        return {"error": {"code": -32603, "message": f"the server's answer is not JSON: {raw[:120]!r}"}}
    return message if isinstance(message, dict) else {}


def _sse_message(raw: bytes, request_id: int) -> dict[str, object]:
    """The JSON-RPC response with our id among the stream's events (notifications skipped)."""
    for event in raw.decode("utf-8", "replace").split("\n\n"):
        data = "\n".join(line[5:].lstrip() for line in event.splitlines() if line.startswith("data:"))
        if not data:
            continue
        message = _json(data.encode())
        if message.get("id") == request_id:
            return message
    return {"error": {"code": -32603, "message": "the server's event stream ended without an answer"}}
