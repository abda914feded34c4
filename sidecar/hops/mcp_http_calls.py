"""`tools/call` to a streamable HTTP server that speaks MCP 2026-07-28, as one POST on a
kept-alive connection of the sidecar's small HTTP/1.1 client (hops/http1_client.py, the
model gateway's provider hop's): measured against aiohttp's client on this path, it took the
sidecar's CPU per tool call down by a tenth (benchmarks/README.md, "tool_gateway.py").

Why not the `mcp` client for this one request: measured on this machine (benchmarks/README.md,
"tool_gateway.py"), its call path (anyio memory streams, a task per request, pydantic
validation of the result, then our re-encoding) cost about 15 ms per call more than a plain
POST, against a goal of 1 ms for the whole gateway. At 2026-07-28 a call is a self-contained
POST (no session, no handshake), so the sidecar can send it itself: the arguments go as the
agent sent them, the result comes back as the server wrote it. The `mcp` client still
connects, discovers the revision, lists the tools (drift) and carries every call to stdio
servers and to servers of the revision before.

A server behind OAuth is called the same way, with the access token the sidecar holds for it
(hops/mcp_credentials.py `OAuthBearer`). Getting a token stays with the `mcp` client's OAuth
flow: while the sidecar holds no valid token, or when the server refuses the one sent (401, or
403 `insufficient_scope`), `call` raises `TokenNeeded` before anything ran, and the call goes
through the `mcp` client, whose flow gets a new token for the calls after it.

The result is relayed as the server wrote it: its JSON is decoded once, to check it and read
`isError`, and the agent gets the server's own bytes (no second encoding), whenever the answer
is the plain `{"jsonrpc":"2.0","id":N,"result":...}` that servers write.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from meshwarden.sidecar.hops.http1_client import Http1Client, Response
from meshwarden.sidecar.hops.mcp_credentials import OAuthBearer

PROTOCOL: Final = "2026-07-28"
_META: Final = (
    b'"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
    b'"io.modelcontextprotocol/clientCapabilities":{},'
    b'"io.modelcontextprotocol/clientInfo":{"name":"meshwarden-sidecar","version":"1"}}'
)


_DECODER: Final = json.JSONDecoder()
MAX_ANSWER_BYTES: Final = 64 * 1024 * 1024  # a tool's answer past this is the server's failure, not relayed


class TokenNeeded(Exception):
    """The sidecar holds no token the OAuth server takes: the call was not made; send it
    through the `mcp` client, whose OAuth flow gets one."""


@dataclass(frozen=True, slots=True)
class CallAnswer:
    result: bytes  # the result object as JSON ("" when `error_code` is set)
    is_error: bool  # the tool's own failure (`isError`)
    error_code: int = 0  # a JSON-RPC error instead of a result
    error_message: str = ""


class HttpToolCaller:
    """POSTs tools/call to one server, with the sidecar's headers (its credential) or the
    OAuth token it holds."""

    def __init__(self, url: str, headers: Mapping[str, str], bearer: OAuthBearer | None = None) -> None:
        self._url = url
        self._headers = {
            **headers,
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": PROTOCOL,
            "Mcp-Method": "tools/call",
        }
        self._bearer = bearer
        self._ids = itertools.count(1)
        self._client = Http1Client()
        self._tls: ssl.SSLContext | None = None  # the system's trust store, for an https:// server

    async def call(self, tool: str, arguments_json: bytes, timeout_s: float) -> CallAnswer:
        """Raises HttpClientError (an OSError when the server cannot be reached, a TimeoutError
        when it does not answer in time), and TokenNeeded when an OAuth server needs a token first."""
        headers = {**self._headers, "Mcp-Name": tool}
        token = self._bearer.token() if self._bearer is not None else None
        if self._bearer is not None:
            if token is None:
                raise TokenNeeded
            headers["Authorization"] = f"Bearer {token}"
        if self._tls is None and self._url.startswith("https:"):
            self._tls = await asyncio.to_thread(ssl.create_default_context)  # reads the trust store
        request_id = next(self._ids)
        body = b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%s,"arguments":%s,%s}}' % (
            request_id,
            json.dumps(tool).encode(),
            arguments_json or b"{}",
            _META,
        )
        async with asyncio.timeout(timeout_s):  # the whole exchange; the client's own bound each step
            response = await self._client.post(
                self._url,
                body,
                headers,
                tls=self._tls,
                proxy=None,
                connect_timeout_s=timeout_s,
                read_timeout_s=timeout_s,
            )
            async with response:
                if token is not None and _refuses_token(response):
                    assert self._bearer is not None  # a token was sent
                    self._bearer.refused(token)
                    raise TokenNeeded
                raw = await response.read(MAX_ANSWER_BYTES)
                content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            relayed = relayed_result(raw, request_id)
            if relayed is not None:
                return relayed
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
        await self._client.close()


def _refuses_token(response: Response) -> bool:
    """HTTP 401, or 403 asking for more scope (RFC 6750 §3.1): the token was not taken."""
    if response.status == 401:
        return True
    return response.status == 403 and "insufficient_scope" in response.headers.get("www-authenticate", "")


def relayed_result(raw: bytes, request_id: int) -> CallAnswer | None:
    """The result as the server wrote it, from an answer laid out as `{"jsonrpc":"2.0","id":N,
    "result":{...}}` and nothing after the result; None for any other answer (the caller reads
    it the general way). The result is decoded once, where it stands, so its end is known
    exactly: a second key after it, or anything else, is not relayed from here."""
    prefix = b'{"jsonrpc":"2.0","id":%d,"result":' % request_id
    if not raw.startswith(prefix):
        return None
    try:
        text = raw.decode()
        result, end = _DECODER.raw_decode(text, len(prefix))  # the prefix is ASCII: one byte a character
    except ValueError:  # not UTF-8, or not JSON
        return None
    if not isinstance(result, dict) or text[end:].strip() != "}":
        return None
    relayed = raw[len(prefix) : end] if len(text) == len(raw) else text[len(prefix) : end].encode()
    return CallAnswer(relayed, bool(result.get("isError")))


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
