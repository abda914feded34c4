"""The agent's HTTP gateway: one aiohttp server on loopback or a 0600 Unix socket, where
unchanged model clients (OpenAI, Anthropic) and MCP clients reach their sidecar.

Each family of routes brings its own error shape (`refuse`), so a client that is refused for
its token, an oversized body, an unknown path or a wrong method (404, 405) reads the error the
way its own SDK expects. The server authenticates, bounds bodies and finds each exact path's
handler; what a request means is the family's business.

It is aiohttp's low-level server (`web.Server`), not a `web.Application`: the routes are a few
exact paths, so one dict lookup replaces the router, the middleware chain and the application's
signals, which cost CPU on every model call (benchmarks/README.md, issue 15). Handlers still get
an aiohttp `web.Request` and answer with aiohttp responses: the families' contract is unchanged.

The agent authenticates with the local API token, either as `Authorization: Bearer <token>`
(OpenAI and MCP clients) or `x-api-key: <token>` (Anthropic clients). That header is the
agent's credential for its sidecar, never a provider's or a tool's: the families must not
forward it upstream.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from meshwarden.addresses import HostPort, ListenAddress, UnixSocket

log = logging.getLogger(__name__)

# Renders a refusal in the family's own error shape: (HTTP status, message) -> response.
Refuse = Callable[[int, str], web.Response]


@dataclass(frozen=True, slots=True)
class RouteFamily:
    """Routes under one path prefix ("/v1/", "/mcp") that answer errors in one shape."""

    name: str
    prefix: str
    routes: Sequence[web.AbstractRouteDef]
    refuse: Refuse
    # Sub-applications' cleanup (an upstream session pool, stdio servers): run at stop.
    on_stop: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=tuple)


class GatewayBindError(OSError):
    """The gateway's address could not be bound; the message names it and what to do."""


class GatewayServer:
    def __init__(self, families: Sequence[RouteFamily], token: bytes | None, max_body_bytes: int) -> None:
        self._families = tuple(families)
        self._token = token
        self._max_body_bytes = max_body_bytes
        self._runner: web.ServerRunner | None = None
        self._routes = _routes(self._families)

    def _family(self, path: str) -> RouteFamily | None:
        return next((f for f in self._families if path.startswith(f.prefix)), None)

    def _authorized(self, request: web.BaseRequest) -> bool:
        if self._token is None:
            return True
        bearer = request.headers.get("Authorization", "")
        offered = bearer[7:] if bearer[:7].lower() == "bearer " else request.headers.get("x-api-key", "")
        return hmac.compare_digest(offered.strip().encode(), self._token)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        assert isinstance(request, web.Request)  # made by _request below
        path = request.path
        family = self._family(path)
        if family is None:
            return web.json_response(
                {"error": f"no gateway serves {path[:200]!r}; model clients use /v1/, MCP clients /mcp"},
                status=404,
            )
        if not self._authorized(request):
            return family.refuse(
                401, "this sidecar's gateway needs its local API token (the sidecar's --api-token-file) as the key"
            )
        methods = self._routes.get(path)
        if methods is None:
            return family.refuse(404, f"this gateway has no route {path[:200]!r}")
        handler = methods.get(request.method)
        if handler is None:
            refused = family.refuse(405, f"{path[:200]} answers {', '.join(sorted(methods))}, not {request.method}")
            refused.headers["Allow"] = ", ".join(sorted(methods))
            return refused
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return family.refuse(413, f"the request body is over this gateway's limit of {self._max_body_bytes} bytes")

    def _request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        """A `web.Request` (what the families' handlers take) with this gateway's body limit."""
        return web.Request(
            message, payload, protocol, writer, task, asyncio.get_running_loop(), client_max_size=self._max_body_bytes
        )

    async def start(self, address: ListenAddress) -> str:
        """Serves on `address`; returns what was bound ("host:port", or "unix:PATH")."""
        server = web.Server(self._handle, request_factory=self._request, access_log=None)
        runner = web.ServerRunner(server, handle_signals=False)
        await runner.setup()
        site: web.BaseSite
        if isinstance(address, UnixSocket):
            Path(address.path).unlink(missing_ok=True)
            site = web.UnixSite(runner, address.path)
        else:
            site = web.TCPSite(runner, address.host, address.port, reuse_port=False)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise GatewayBindError(
                f"cannot listen on {address} for the agent's HTTP gateway: {exc.strerror or exc}; give each "
                "sidecar on this host its own --gateway-listen (port 0 picks a free one), or `off`"
            ) from exc
        self._runner = runner
        if isinstance(address, UnixSocket):
            os.chmod(address.path, 0o600)  # only this user may speak as the agent
            return str(address)
        host, port = runner.addresses[0][:2]
        return str(HostPort(address.host, int(port)))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for family in self._families:
            for cleanup in family.on_stop:
                await cleanup()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _routes(families: Sequence[RouteFamily]) -> dict[str, dict[str, Handler]]:
    """path -> method -> handler. Only exact paths: a family that needs a variable one would
    need a router again, so it is refused at start-up rather than never matched."""
    found: dict[str, dict[str, Handler]] = {}
    for family in families:
        for route in family.routes:
            if not isinstance(route, web.RouteDef) or "{" in route.path or not route.path.startswith(family.prefix):
                raise ValueError(f"gateway family {family.name}: {route!r} is not an exact path under {family.prefix}")
            methods = found.setdefault(route.path, {})
            methods[route.method] = route.handler
            if route.method == "GET" and route.kwargs.get("allow_head", True):
                methods.setdefault("HEAD", route.handler)
    return found
