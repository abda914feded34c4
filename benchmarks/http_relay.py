"""A bare HTTP relay, the floor under the model gateway: it forwards POST bodies to one
upstream with a fixed Authorization header, streaming answers through, and decides nothing.

    python benchmarks/http_relay.py --upstream http://127.0.0.1:PORT --key KEY
        [--server app|lowlevel|httptools] [--client aiohttp|http1]

benchmarks/model_gateway.py runs it beside the sidecar: gateway - relay is what the gateway's
own work (policy, receipts, usage, the stages) costs per call. The variants measure the HTTP
machinery itself (issue 15), each side on its own:

  --server app        aiohttp's web.Application, router and middleware (the gateway until issue 15)
  --server lowlevel   aiohttp's low-level web.Server: the same protocol and request objects,
                      no application, router or middleware
  --server httptools  an asyncio.Protocol parsing requests with httptools, writing answers by hand
  --client aiohttp    an aiohttp ClientSession (the provider hop until issue 15)
  --client http1      meshwarden.sidecar.hops.http1_client: kept-alive connections, httptools
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import httptools
from aiohttp import web

from meshwarden.sidecar.hops.http1_client import Http1Client


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    stream: bool
    body: bytes
    chunks: AsyncIterator[bytes] | None
    done: Callable[[], Awaitable[None]]


Forward = Callable[[str, bytes], Awaitable[Answer]]


async def _nothing() -> None:
    return None


def aiohttp_client(upstream: str, key: str) -> Forward:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def forward(path: str, body: bytes) -> Answer:
        answer = await session.post(upstream + path, data=body, headers=headers)
        if answer.headers.get("Content-Type", "").startswith("text/event-stream"):

            async def done() -> None:
                answer.release()

            return Answer(answer.status, True, b"", answer.content.iter_any(), done)
        raw = await answer.read()
        answer.release()
        return Answer(answer.status, False, raw, None, _nothing)

    return forward


def http1_client(upstream: str, key: str) -> Forward:
    client = Http1Client()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def forward(path: str, body: bytes) -> Answer:
        answer = await client.post(
            upstream + path, body, headers, tls=None, proxy=None, connect_timeout_s=10, read_timeout_s=60
        )
        if answer.headers.get("content-type", "").startswith("text/event-stream"):

            async def done() -> None:
                answer.release()

            return Answer(answer.status, True, b"", answer.chunks(), done)
        raw = await answer.read(1 << 26)
        answer.release()
        return Answer(answer.status, False, raw, None, _nothing)

    return forward


async def aiohttp_answer(request: web.BaseRequest, forward: Forward) -> web.StreamResponse:
    answer = await forward(request.path, await request.read())
    if not answer.stream:
        return web.Response(status=answer.status, body=answer.body, content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    assert answer.chunks is not None
    async for chunk in answer.chunks:
        await response.write(chunk)
    await answer.done()
    await response.write_eof()
    return response


class HttptoolsRelay(asyncio.Protocol):
    """One client connection: requests parsed by httptools, one at a time, answered by hand."""

    def __init__(self, forward: Forward) -> None:
        self._forward = forward
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_message_begin(self) -> None:
        self._url, self._body = b"", []

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        asyncio.get_running_loop().create_task(self._answer(self._url.decode(), b"".join(self._body)))

    async def _answer(self, path: str, body: bytes) -> None:
        transport = self._transport
        assert transport is not None
        answer = await self._forward(path, body)
        if not answer.stream:
            transport.write(
                b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (answer.status, len(answer.body), answer.body)
            )
            return
        transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert answer.chunks is not None
        async for chunk in answer.chunks:
            transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await answer.done()
        transport.write(b"0\r\n\r\n")


async def serve(upstream: str, key: str, server: str, client: str) -> None:
    forward = (http1_client if client == "http1" else aiohttp_client)(upstream, key)
    cleanup: Callable[[], Awaitable[None]]
    if server == "httptools":
        loop = asyncio.get_running_loop()
        listening = await loop.create_server(lambda: HttptoolsRelay(forward), "127.0.0.1", 0)
        host, port = listening.sockets[0].getsockname()[:2]

        async def close() -> None:
            listening.close()

        cleanup = close
    else:
        runner: web.BaseRunner
        if server == "lowlevel":

            async def handle(request: web.BaseRequest) -> web.StreamResponse:
                return await aiohttp_answer(request, forward)

            runner = web.ServerRunner(web.Server(handle, access_log=None))
        else:

            async def relay(request: web.Request) -> web.StreamResponse:
                return await aiohttp_answer(request, forward)

            app = web.Application()
            app.router.add_post("/{tail:.*}", relay)
            runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        cleanup = runner.cleanup
    print(json.dumps({"event": "ready", "component": "http-relay", "listen": f"{host}:{port}"}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--server", choices=["app", "lowlevel", "httptools"], default="app")
    parser.add_argument("--client", choices=["aiohttp", "http1"], default="aiohttp")
    options = parser.parse_args()
    try:
        asyncio.run(serve(options.upstream, options.key, options.server, options.client))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
