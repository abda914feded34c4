"""sidecar.edges.gateway_http: the agent's HTTP gateway authenticates with the local API token,
bounds bodies, and refuses in the shape of the route family asked for, over a real socket."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from meshwarden.addresses import HostPort, UnixSocket
from meshwarden.sidecar.edges.gateway_http import GatewayServer, RouteFamily

TOKEN = b"a-long-enough-local-api-token"


def _family() -> RouteFamily:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"got": len(await request.read())})

    def refuse(status: int, message: str) -> web.Response:
        return web.json_response({"error": {"message": message, "type": "refused"}}, status=status)

    return RouteFamily("test", "/v1/", [web.post("/v1/echo", echo)], refuse)


async def _started(tmp_path: Path | None = None) -> tuple[GatewayServer, str]:
    server = GatewayServer([_family()], TOKEN, max_body_bytes=1024)
    address = UnixSocket(str(tmp_path / "gw.sock")) if tmp_path else HostPort("127.0.0.1", 0)
    return server, await server.start(address)


async def test_bearer_and_x_api_key_are_accepted_and_anything_else_refused_in_the_family_shape() -> None:
    server, bound = await _started()
    try:
        async with aiohttp.ClientSession(f"http://{bound}") as http:
            ok = await http.post("/v1/echo", data=b"{}", headers={"Authorization": f"Bearer {TOKEN.decode()}"})
            assert (ok.status, await ok.json()) == (200, {"got": 2})
            ok = await http.post("/v1/echo", data=b"{}", headers={"x-api-key": TOKEN.decode()})
            assert ok.status == 200
            bad = await http.post("/v1/echo", data=b"{}", headers={"Authorization": "Bearer wrong"})
            body = await bad.json()
            assert bad.status == 401 and "local API token" in body["error"]["message"]
            assert TOKEN.decode() not in await bad.text()
    finally:
        await server.stop()


async def test_an_oversized_body_is_refused_with_the_limit_and_unknown_paths_name_the_gateways() -> None:
    server, bound = await _started()
    auth = {"Authorization": f"Bearer {TOKEN.decode()}"}
    try:
        async with aiohttp.ClientSession(f"http://{bound}") as http:
            big = await http.post("/v1/echo", data=b"x" * 4096, headers=auth)
            assert big.status == 413 and "1024 bytes" in (await big.json())["error"]["message"]
            lost = await http.get("/elsewhere", headers=auth)
            assert lost.status == 404 and "/mcp" in (await lost.json())["error"]
    finally:
        await server.stop()


async def test_a_unix_socket_is_private_to_its_user(tmp_path: Path) -> None:
    server, bound = await _started(tmp_path)
    try:
        mode = stat.S_IMODE(os.stat(tmp_path / "gw.sock").st_mode)
        assert bound == f"unix:{tmp_path / 'gw.sock'}" and mode == 0o600
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(tmp_path / "gw.sock"))) as http:
            ok = await http.post("http://gateway/v1/echo", data=b"{}", headers={"x-api-key": TOKEN.decode()})
            assert ok.status == 200
    finally:
        await server.stop()


async def test_unknown_routes_and_methods_under_a_family_are_refused_in_its_shape() -> None:
    server, bound = await _started()
    auth = {"Authorization": f"Bearer {TOKEN.decode()}"}
    try:
        async with aiohttp.ClientSession(f"http://{bound}") as http:
            missing = await http.post("/v1/nothing", data=b"{}", headers=auth)
            assert missing.status == 404 and "/v1/nothing" in (await missing.json())["error"]["message"]
            wrong = await http.get("/v1/echo", headers=auth)
            assert wrong.status == 405 and wrong.headers["Allow"] == "POST"
            assert (await wrong.json())["error"]["type"] == "refused"
    finally:
        await server.stop()


def test_a_family_with_a_variable_path_is_refused_at_construction() -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.Response()

    family = RouteFamily("test", "/v1/", [web.get("/v1/items/{id}", echo)], lambda s, m: web.Response(status=s))
    with pytest.raises(ValueError, match="not an exact path under /v1/"):
        GatewayServer([family], TOKEN, max_body_bytes=1024)
