"""The sidecar's connections to the MCP servers its bundle declares, made with the official `mcp`
client (streamable HTTP, or a stdio process the sidecar starts) and kept open between calls.

One connection per server, opened on first use, reopened after it broke. Each lives in a task
of its own because the `mcp` client's context managers (anyio task groups) must be entered and
left in the same task; calls from any task share it (JSON-RPC ids keep them apart). On
connecting, the server's tools are listed and their input schemas hashed: that is what the
tool check compares with the bundle (schema drift) and validates arguments against.

The secret a server needs goes upstream from here only (sidecar/hops/mcp_credentials.py); the
agent's own token never does: the MCP client here is built from the bundle's declaration
alone, with nothing of the agent's request but the tool's name and arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from meshwarden.errors import ToolServerUnavailable
from meshwarden.policy_bundle.mcp_servers import McpServerDecl, schema_sha256
from meshwarden.sidecar.hops.mcp_credentials import CredentialSource, Upstream, env_name, read_secret, upstream_for
from meshwarden.sidecar.hops.mcp_http_calls import PROTOCOL, HttpToolCaller

if TYPE_CHECKING:  # `mcp` (and its pydantic models, ~40 MB) loads on the first connection, not at start
    from mcp import Client

log = logging.getLogger(__name__)

MAX_LISTED_PAGES: Final = 100


@dataclass(frozen=True, slots=True)
class LiveTool:
    """A tool as its server lists it right now."""

    name: str
    schema_sha256: str
    input_schema: Mapping[str, Any]
    definition: Mapping[str, Any]  # the whole tool (JSON), for the agent's tools/list


def _identity(decl: McpServerDecl) -> tuple[object, ...]:
    """What makes a connection: a new bundle revision that changes none of it keeps the connection."""
    return (decl.url, decl.command, decl.credential)


class McpConnection:
    def __init__(self, decl: McpServerDecl, credentials: CredentialSource) -> None:
        self.decl = decl
        self._credentials = credentials
        self._client: Client | None = None
        self._fast: HttpToolCaller | None = None
        self._tools: dict[str, LiveTool] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[Client] | None = None  # the attempt under way (or the last one)
        self._closing = asyncio.Event()

    @property
    def tools(self) -> Mapping[str, LiveTool]:
        return self._tools

    @property
    def http_calls(self) -> HttpToolCaller | None:
        """tools/call as a plain POST, when the server speaks 2026-07-28 over HTTP (with its
        credential as a header, or the OAuth token the sidecar holds); None: calls go through
        the `mcp` client."""
        return self._fast

    async def client(self) -> Client:
        """The open client, connecting first if needed; ToolServerUnavailable when it cannot."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is not None:
                return self._client
            if self._ready is None or self._ready.done():  # no attempt under way: start one
                self._ready = asyncio.get_running_loop().create_future()
                self._closing = asyncio.Event()
                self._task = asyncio.create_task(self._hold(self._ready), name=f"mcp-server-{self.decl.name}")
            ready = self._ready
        return await asyncio.shield(ready)  # a caller that gives up leaves the attempt to the others

    async def refresh_tools(self) -> Mapping[str, LiveTool]:
        """Lists the server's tools again (an agent asked for tools/list)."""
        client = await self.client()
        try:
            self._tools = await _list_tools(client)
        except Exception as exc:
            await self.broken(exc)
            raise ToolServerUnavailable(
                f"MCP server {self.decl.name} failed to list its tools: {_reason(exc)}"
            ) from exc
        return self._tools

    async def broken(self, exc: BaseException) -> None:
        """A call failed in transport: drop the connection; the next call reconnects."""
        log.warning("MCP server %s: connection dropped after %s", self.decl.name, _reason(exc))
        await self.close()

    async def close(self) -> None:
        self._closing.set()
        task, self._task, self._client = self._task, None, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _hold(self, ready: asyncio.Future[Client]) -> None:
        from mcp import Client, StdioServerParameters
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        try:
            upstream = await self._upstream()
            async with contextlib.AsyncExitStack() as stack:
                if self.decl.url:
                    http = await stack.enter_async_context(
                        create_mcp_http_client(headers=dict(upstream.headers), auth=upstream.auth)
                    )
                    server: Any = streamable_http_client(self.decl.url, http_client=http, terminate_on_close=True)
                else:
                    server = StdioServerParameters(
                        command=self.decl.command[0], args=list(self.decl.command[1:]), env=dict(upstream.env)
                    )
                client = await stack.enter_async_context(Client(server, cache=None))
                self._tools = await _list_tools(client)
                if self.decl.url and client.protocol_version == PROTOCOL:
                    self._fast = HttpToolCaller(self.decl.url, upstream.headers, upstream.bearer)
                    stack.push_async_callback(self._fast.close)
                self._client = client
                ready.set_result(client)
                log.info("MCP server %s connected (%s), %d tools", self.decl.name, self._where(), len(self._tools))
                await self._closing.wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.set_exception(ToolServerUnavailable(f"MCP server {self.decl.name}: connection cancelled"))
            raise
        except ToolServerUnavailable as exc:
            if not ready.done():
                ready.set_exception(exc)
        except Exception as exc:  # noqa: BLE001 - the connection task: any failure of transport or handshake
            error = ToolServerUnavailable(self._unreachable(exc))
            if not ready.done():
                ready.set_exception(error)
            else:
                log.warning("MCP server %s: connection lost: %s", self.decl.name, _reason(exc))
        finally:
            self._client, self._fast = None, None

    async def _upstream(self) -> Upstream:
        ref = self.decl.credential
        if ref is None:
            return Upstream()
        secret = await asyncio.to_thread(read_secret, ref, self._credentials, self.decl.name)
        return upstream_for(ref, secret, self.decl.url)

    def _unreachable(self, exc: BaseException) -> str:
        """Why the connection failed, and what to check: the credential when the authorization
        server refused it (its answer, never the secret), else whether the server runs."""
        from mcp.client.auth import OAuthFlowError  # loaded by the connection that failed

        ref = self.decl.credential
        if ref is not None and isinstance(_innermost(exc), OAuthFlowError):
            return (
                f"MCP server {self.decl.name}: the sidecar got no OAuth token from {ref.issuer} as client "
                f"{ref.client_id!r}: {_reason(exc)}; check the client secret this sidecar holds as credential "
                f"{ref.name!r} (--tool-credentials-dir, or {env_name(ref.name)}) and the client's grant there"
            )
        return (
            f"MCP server {self.decl.name} at {self._where()} could not be reached: {_reason(exc)}; "
            "check that it runs (meshwarden tools ledger shows the failed calls)"
        )

    def _where(self) -> str:
        return self.decl.url or f"stdio `{self.decl.command[0]}`"


class McpUpstreams:
    """The connections, by server name; a bundle that changes a server's address or credential
    gets a new connection (the old one is closed)."""

    def __init__(self, credentials: CredentialSource) -> None:
        self._credentials = credentials
        self._connections: dict[str, McpConnection] = {}
        self._retiring: set[asyncio.Task[None]] = set()  # replaced connections, closing

    def connection(self, decl: McpServerDecl) -> McpConnection:
        found = self._connections.get(decl.name)
        if found is not None and _identity(found.decl) == _identity(decl):
            return found
        if found is not None:
            task = asyncio.get_running_loop().create_task(found.close())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        created = self._connections[decl.name] = McpConnection(decl, self._credentials)
        return created

    async def close(self) -> None:
        connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            await connection.close()


async def _list_tools(client: Client) -> dict[str, LiveTool]:
    tools: dict[str, LiveTool] = {}
    cursor: str | None = None
    for _ in range(MAX_LISTED_PAGES):
        page = await client.list_tools(cursor=cursor)
        for tool in page.tools:
            schema = tool.input_schema
            tools[tool.name] = LiveTool(
                tool.name,
                schema_sha256(schema),
                schema,
                tool.model_dump(mode="json", by_alias=True, exclude_none=True),
            )
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _innermost(exc: BaseException) -> BaseException:
    """The first error inside the groups anyio wraps transport errors in."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _reason(exc: BaseException) -> str:
    """The innermost cause, in a few words."""
    exc = _innermost(exc)
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"
