"""sidecar.hops.http1_client, over real sockets: bodies of every framing, connections kept and
reused, a stream cut midway, timeouts, TLS verified against a given CA (and refused without
it), and CONNECT tunnels and plain requests through an HTTP proxy."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gzip
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshwarden.sidecar.hops.http1_client import (
    BodyTooLarge,
    ConnectFailed,
    ConnectionCut,
    Http1Client,
    ReadTimedOut,
    Response,
)
from meshwarden.sidecar.hops.upstream import Upstream

Raw = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _raw_server(handle: Raw) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def _head(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    await reader.readexactly(length)
    return head


async def _post(client: Http1Client, url: str, **options: object) -> Response:
    settings: dict[str, object] = {"tls": None, "proxy": None, "connect_timeout_s": 5.0, "read_timeout_s": 5.0}
    settings.update(options)
    return await client.post(url, b'{"q": 1}', {"Content-Type": "application/json"}, **settings)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def _aiohttp_server(
    app: web.Application, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[object]]]:
    peers: list[object] = []

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return await handler(request)

    app.middlewares.append(record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}", peers
    finally:
        await runner.cleanup()


def _provider_app() -> web.Application:
    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 1000 + await request.read(), content_type="application/json")

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for n in range(3):
            await response.write(f"data: {n}\n\n".encode())
        await response.write_eof()
        return response

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b'{"a": "' + b"y" * 5000 + b'"}'), headers={"Content-Encoding": "gzip"})

    async def broken_gzip(request: web.Request) -> web.Response:
        return web.Response(body=b"not gzip at all", headers={"Content-Encoding": "gzip"})

    async def closing(request: web.Request) -> web.Response:
        return web.Response(body=b"bye", headers={"Connection": "close"})

    app = web.Application()
    app.router.add_post("/sized", sized)
    app.router.add_post("/chunked", chunked)
    app.router.add_post("/gzip", gzipped)
    app.router.add_post("/close", closing)
    app.router.add_post("/broken-gzip", broken_gzip)
    return app


async def test_bodies_of_each_framing_arrive_whole_and_one_connection_serves_call_after_call() -> None:
    client = Http1Client()
    async with _aiohttp_server(_provider_app()) as (base, peers):
        for _ in range(3):
            async with await _post(client, base + "/sized") as answer:
                assert answer.status == 200 and answer.headers["content-type"] == "application/json"
                assert await answer.read(10_000) == b"x" * 1000 + b'{"q": 1}'
        async with await _post(client, base + "/chunked") as answer:
            assert [chunk async for chunk in answer.chunks()] != []
        async with await _post(client, base + "/chunked") as answer:
            assert await answer.read(1000) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
        async with await _post(client, base + "/gzip") as answer:
            assert await answer.read(10_000) == b'{"a": "' + b"y" * 5000 + b'"}'
        assert len(peers) == 6 and len(set(peers)) == 1  # one kept-alive connection
        async with await _post(client, base + "/close") as answer:
            assert await answer.read(100) == b"bye"
        async with await _post(client, base + "/sized") as answer:
            await answer.read(10_000)
        assert len(set(peers)) == 2  # the server said close: a new connection after it
        async with await _post(client, base + "/sized") as answer:
            with pytest.raises(BodyTooLarge):
                await answer.read(100)
        async with await _post(client, base + "/sized") as answer:
            assert answer.status == 200  # its body is left unread: the connection is not reused
        async with await _post(client, base + "/sized") as answer:
            await answer.read(10_000)
        assert len(set(peers)) == 3  # a body left unread is not reused
        async with await _post(client, base + "/broken-gzip") as answer:
            with pytest.raises(ConnectionCut, match="gzip encoding is broken"):
                await answer.read(100)
    await client.close()


async def test_a_body_delimited_by_the_close_is_read_to_the_end() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + b"z" * 70_000)
        await writer.drain()
        writer.close()

    server, base = await _raw_server(handle)
    client = Http1Client()
    async with server, await _post(client, base + "/") as answer:
        assert await answer.read(100_000) == b"z" * 70_000
    await client.close()


async def test_a_stream_cut_midway_gives_what_came_then_says_it_was_cut() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata: \r\n10\r\nhalf")
        await writer.drain()
        writer.close()

    server, base = await _raw_server(handle)
    client = Http1Client()
    got: list[bytes] = []
    async with server, await _post(client, base + "/") as answer:
        with pytest.raises(ConnectionCut):
            async for chunk in answer.chunks():
                got.append(chunk)
    assert b"".join(got) == b"data: half"
    await client.close()


async def test_headers_that_never_end_are_cut_at_the_limit() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Long: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(64):  # 1 MiB of one header value, as a hostile upstream might send
                writer.write(b"a" * 16384)
                await writer.drain()
        writer.close()

    server, base = await _raw_server(handle)
    client = Http1Client()
    async with server:
        with pytest.raises(ConnectionCut, match="headers are over"):
            await _post(client, base + "/")
    await client.close()


async def test_a_compressed_answer_inflates_in_bounded_pieces_and_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024), compresslevel=9)  # 8 MiB from about 8 KiB

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:  # one kept-alive connection serves both requests
                await _head(reader)
                head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
                writer.write(head + bomb)
                await writer.drain()
        writer.close()

    server, base = await _raw_server(handle)
    client = Http1Client()
    async with server:
        async with await _post(client, base + "/") as answer:
            sizes = [len(piece) async for piece in answer.chunks()]
        assert sum(sizes) == 8 * 1024 * 1024 and max(sizes) <= 256 * 1024
        async with await _post(client, base + "/") as answer:
            with pytest.raises(BodyTooLarge):
                await answer.read(1024 * 1024)
    await client.close()


async def test_a_second_message_after_the_answer_is_not_read_into_it_nor_into_the_next() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + smuggled)
        await writer.drain()
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await _head(reader)  # a client that reused this connection would get the smuggled answer
            writer.write(smuggled)
            await writer.drain()
        writer.close()

    server, base = await _raw_server(handle)
    client = Http1Client()
    async with server:
        for _ in range(2):
            async with await _post(client, base + "/") as answer:
                assert await answer.read(100) == b"ok"
    await client.close()


async def test_a_silent_peer_times_out_and_a_closed_port_fails_to_connect() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        await asyncio.sleep(5)

    server, base = await _raw_server(handle)
    client = Http1Client()
    async with server:
        with pytest.raises(ReadTimedOut, match="nothing came for 0.2 s"):
            await _post(client, base + "/", read_timeout_s=0.2)
        server.close()
    with pytest.raises(ConnectFailed, match="could not connect to 127.0.0.1"):
        await _post(client, base + "/")
    await client.close()


def _ca_and_server_context(directory: Path) -> tuple[Path, ssl.SSLContext]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provider test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    return directory / "ca.pem", context


class _Proxy:
    """An HTTP proxy: CONNECT tunnels, and plain requests in absolute form relayed as they
    came. It records each request's head and may refuse with 407."""

    def __init__(self, refuse: bool = False) -> None:
        self.heads: list[bytes] = []
        self._refuse = refuse

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        if self._refuse:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        method, target = head.split(b" ")[:2]
        if method == b"CONNECT":
            host, port = target.decode().rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:  # http://host:port/path: the rest of this connection goes to that origin
            authority = target.split(b"/")[2].decode()
            host, port = authority.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            up_writer.write(head.replace(b"http://" + authority.encode(), b"", 1))
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def test_tls_is_verified_against_the_given_ca_directly_and_through_a_connect_tunnel(tmp_path: Path) -> None:
    ca_file, server_context = _ca_and_server_context(tmp_path)
    proxy = _Proxy()
    proxy_server, proxy_url = await _raw_server(proxy.handle)
    async with _aiohttp_server(_provider_app(), server_context) as (base, peers):
        upstream = Upstream({})
        async with await upstream.post(base + "/sized", b"{}", {}, ca_file=str(ca_file), timeout_s=5) as answer:
            assert await answer.read(10_000) == b"x" * 1000 + b"{}"
        with pytest.raises(ConnectFailed, match="TLS certificate was not trusted"):
            await upstream.post(base + "/sized", b"{}", {}, ca_file="", timeout_s=5)  # the system's store
        await upstream.close()

        secret_proxy = proxy_url.replace("http://", "http://me:s%40cret@")
        tunnelled = Upstream({"HTTPS_PROXY": secret_proxy, "NO_PROXY": "internal.corp"})
        for _ in range(2):
            async with await tunnelled.post(base + "/sized", b"{}", {}, ca_file=str(ca_file), timeout_s=5) as answer:
                assert await answer.read(10_000) == b"x" * 1000 + b"{}"
        await tunnelled.close()
        assert len(proxy.heads) == 1  # the tunnel was kept alive for the second call
        assert proxy.heads[0].startswith(f"CONNECT 127.0.0.1:{base.rsplit(':', 1)[1]} HTTP/1.1".encode())
        assert b"Proxy-Authorization: Basic bWU6c0BjcmV0" in proxy.heads[0]  # me:s@cret
        assert len(peers) == 3
    proxy_server.close()


async def test_plain_http_goes_through_the_proxy_in_absolute_form_and_a_refusal_is_named() -> None:
    proxy = _Proxy()
    proxy_server, proxy_url = await _raw_server(proxy.handle)
    async with _aiohttp_server(_provider_app()) as (base, peers):
        upstream = Upstream({"http_proxy": proxy_url})
        async with await upstream.post(base + "/sized", b"{}", {}, ca_file="", timeout_s=5) as answer:
            assert await answer.read(10_000) == b"x" * 1000 + b"{}"
        await upstream.close()
        assert proxy.heads[0].startswith(f"POST {base}/sized HTTP/1.1".encode()) and len(peers) == 1
    proxy_server.close()

    refusing = _Proxy(refuse=True)
    refusing_server, refusing_url = await _raw_server(refusing.handle)
    client = Http1Client()
    with pytest.raises(ConnectFailed, match="refused CONNECT api.example:443: 'HTTP/1.1 407"):
        await _post(client, "https://api.example/v1", tls=ssl.create_default_context(), proxy=refusing_url)
    refusing_server.close()
    await client.close()


async def test_header_values_cannot_smuggle_lines() -> None:
    client = Http1Client()
    with pytest.raises(ValueError, match="line break"):
        await client.post(
            "http://127.0.0.1:9/",
            b"",
            {"x-api-key": "k\r\nX-Evil: 1"},
            tls=None,
            proxy=None,
            connect_timeout_s=1,
            read_timeout_s=1,
        )


async def test_requests_over_the_limit_wait_for_one_to_be_released() -> None:
    client = Http1Client(max_requests=1)
    async with _aiohttp_server(_provider_app()) as (base, peers):
        first = await _post(client, base + "/sized")
        second = asyncio.ensure_future(_post(client, base + "/sized"))
        await asyncio.sleep(0.2)
        assert not second.done() and len(peers) == 1
        await first.read(10_000)
        first.release()
        async with await second as answer:
            assert answer.status == 200
        assert len(set(peers)) == 1  # and it took the released connection
    await client.close()
