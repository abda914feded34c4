"""A small HTTP/1.1 client for the provider hop: kept-alive connections per origin, responses
parsed by httptools (llhttp, the parser uvicorn uses), TLS by the `ssl` module, and CONNECT
tunnels through an HTTP proxy.

Why our own and not aiohttp's client: a model call through the sidecar spends about a quarter
of its CPU in the provider hop, and most of that is aiohttp's per-request Python objects
(ClientRequest, ClientResponse, the connector's bookkeeping, the payload stream, yarl URLs),
for features the hop does not use (cookies, redirects, auth helpers, multipart, timeouts in
four flavours). This client does one thing: send one request with a body in memory on a
kept-alive connection and hand back the status, the headers and the body as it arrives.
benchmarks/README.md (issue 15) has the figures that made the case.

What it does, and what it leaves out on purpose:
- Bodies: the request's is sent with Content-Length; the response's may be Content-Length,
  chunked or delimited by the connection's close, and gzip or deflate encoded.
- Keep-alive: a connection goes back to its origin's idle list only when its response was read
  to the end and neither side said `Connection: close`; an idle connection is dropped after
  `idle_s` (15 s, like aiohttp's client), or as soon as the server closes it. A request is
  never retried on another connection: a POST that may have reached the provider may have been
  billed, and the provider hop's fallback chain is the retry.
- Timeouts: connecting (TCP, the proxy's CONNECT and the TLS handshake together), and between
  two reads of the answer; no total (a long stream is fine while it keeps coming).
- Proxies: http:// proxies only; an https:// target is reached through a CONNECT tunnel, an
  http:// one by sending the absolute URL to the proxy. Credentials in the proxy URL go as
  `Proxy-Authorization: Basic`, and only to the proxy.
- Limits against a hostile or broken upstream: 64 KiB for the status line and headers; a
  compressed body inflates 256 KiB at a time, so a reader's byte limit holds against a gzip
  bomb; bytes after a complete answer (a second message) end the connection rather than being
  read into this answer or the next.
- No redirects, no cookies, no 100-continue, no HTTP/2.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

import httptools

_HIGH_WATER: Final = 256 * 1024  # buffered answer bytes before the socket stops being read
_MAX_HEAD: Final = 64 * 1024  # status line and headers (interim answers too), or a proxy's to CONNECT
_DECODED_PIECE: Final = 256 * 1024  # the most a compressed piece inflates to at once: a gzip bomb stops at a limit


class HttpClientError(Exception):
    """The exchange failed; the message says at which step. Nothing about the request's body
    or headers is in it (they carry the provider's key)."""


class ConnectFailed(HttpClientError, OSError):
    """No connection to the origin (or the proxy, or through it): nothing was sent."""


class ReadTimedOut(HttpClientError, TimeoutError):
    """The peer sent nothing for longer than the read timeout."""


class ConnectionCut(HttpClientError, ConnectionError):
    """The connection closed, or the peer broke the protocol, before the answer was complete."""


class BodyTooLarge(HttpClientError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is over {limit} bytes")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class _Target:
    """One URL, split once: where to connect and what to put on the request line."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent to the origin
    host_header: str


@dataclass(frozen=True, slots=True)
class _Proxy:
    host: str
    port: int
    authorization: str  # "" or "Basic ..."


class _Connection(asyncio.Protocol):
    """One socket and the response being read on it (httptools calls the on_* methods)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._head_bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self._head_bytes = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.error: HttpClientError | None = None
        self.chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = self.error or ConnectionCut(f"the answer is not valid HTTP/1.1 ({exc})")
            self._close()
        else:
            # httptools gathers a header line in memory until it ends: cap what a peer may send
            # before the final status and headers, or a server that never ends them grows us without end.
            if not self.headers_done:
                self._head_bytes += len(data)
                if self._head_bytes > _MAX_HEAD:
                    self.error = ConnectionCut(f"the answer's status line and headers are over {_MAX_HEAD} bytes")
                    self._close()
        self._wake()

    def eof_received(self) -> bool:
        if self.headers_done and not self.complete and not self._delimited():
            self.complete = True  # a body that ends with the connection
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete and self.error is None:
            self.error = ConnectionCut("the connection closed before the answer was complete")
        self._wake()

    # httptools' callbacks
    def on_message_begin(self) -> None:
        if self.complete:
            # Bytes after the answer, or while idle, are no answer to a request of ours: a second
            # message must not be read into this response or the next (response splitting).
            self.keep_alive = False
            raise ConnectionCut("the peer sent more after its answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (103 Early Hints): the real one follows
            self.headers = []
            return
        self.status, self.headers_done = status, True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.headers_done:
            self.keep_alive = self._parser.should_keep_alive()  # read here: llhttp forgets it once the message ends
            self.complete = True

    # used by the client and the response
    def _delimited(self) -> bool:
        return any(n.lower() in (b"content-length", b"transfer-encoding") for n, _ in self.headers)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _timed_out(self, timeout_s: float) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ReadTimedOut(f"nothing came for {timeout_s:g} s"))

    async def wait(self, timeout_s: float) -> None:
        """Until more of the answer arrived, the connection ended, or `timeout_s` passed."""
        if self.closed and self.error is None and not self.complete:
            self.error = ConnectionCut("the connection closed before the answer was complete")
        if self.error is not None:
            raise self.error
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(timeout_s, self._timed_out, timeout_s)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self.error is not None and not self.chunks:
            raise self.error

    def take(self) -> bytes:
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        return (
            self.complete
            and self.error is None
            and not self.closed
            and self.transport is not None
            and not self.transport.is_closing()
            and self.keep_alive
        )

    def send(self, head: bytes, body: bytes) -> None:
        self._reset()
        assert self.transport is not None
        self.transport.write(head + body if len(body) < 64 * 1024 else head)
        if len(body) >= 64 * 1024:
            self.transport.write(body)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        self.closed = True
        self._close()


class Response:
    """A response whose body is still arriving; release it (`async with`) to reuse its
    connection, or its connection is closed."""

    def __init__(self, client: Http1Client, key: object, connection: _Connection, read_timeout_s: float) -> None:
        self._client, self._key, self._connection = client, key, connection
        self._read_timeout_s = read_timeout_s
        self.status = connection.status
        self.headers: dict[str, str] = {}
        for name, value in connection.headers:
            lowered = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            self.headers[lowered] = f"{self.headers[lowered]}, {text}" if lowered in self.headers else text
        encoding = self.headers.get("content-encoding", "").strip().lower()
        self._decoder = zlib.decompressobj(wbits=47) if encoding in ("gzip", "deflate", "x-gzip") else None
        self._released = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (decoded), in the pieces it arrives in; a compressed piece
        inflates in parts of at most `_DECODED_PIECE` bytes, so a reader's limit holds."""
        connection = self._connection
        while True:
            if connection.chunks:
                data = connection.take()
                if self._decoder is None:
                    yield data
                    continue
                while data:
                    piece, data = self._inflated(data)
                    if piece:
                        yield piece
                continue
            if connection.complete:
                if self._decoder is not None and (rest := self._inflated(b"", flush=True)[0]):
                    yield rest  # all input is taken by now: flush gives back only what zlib held
                return
            await connection.wait(self._read_timeout_s)

    def _inflated(self, data: bytes, *, flush: bool = False) -> tuple[bytes, bytes]:
        """At most `_DECODED_PIECE` bytes inflated from `data`, and the compressed bytes still
        to inflate (zlib's unconsumed tail)."""
        assert self._decoder is not None
        try:
            if flush:
                return self._decoder.flush(), b""
            return self._decoder.decompress(data, _DECODED_PIECE), self._decoder.unconsumed_tail
        except zlib.error as exc:
            self._connection.close()
            raise ConnectionCut(
                f"the answer's {self.headers.get('content-encoding')} encoding is broken ({exc})"
            ) from None

    async def read(self, limit: int) -> bytes:
        """The whole body; BodyTooLarge past `limit` bytes."""
        connection = self._connection
        if connection.complete and self._decoder is None:
            body = connection.take()
            if len(body) > limit:
                raise BodyTooLarge(limit)
            return body
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._client._slots.release()
        if self._connection.reusable() and not self._connection.chunks:
            self._client._give_back(self._key, self._connection)
        else:
            self._connection.close()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.release()


class Http1Client:
    """`max_requests` at once (256, the connector limit the aiohttp session here had; aiohttp's
    own default is 100): the next waits for one to be released, so a burst of calls cannot
    open a socket each without end."""

    def __init__(self, *, idle_s: float = 15.0, max_idle_per_origin: int = 32, max_requests: int = 256) -> None:
        self._idle_s, self._max_idle = idle_s, max_idle_per_origin
        self._slots = asyncio.Semaphore(max_requests)
        self._idle: dict[object, list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._proxies: dict[str, _Proxy] = {}

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        tls: ssl.SSLContext | None,
        proxy: str | None,
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> Response:
        """Sends the request and waits for the answer's status and headers. `tls` is required
        for an https:// URL (the context that verifies the origin's certificate)."""
        target = self._target(url)
        via = self._proxy(proxy) if proxy else None
        if target.scheme == "https" and tls is None:
            raise ValueError(f"{url} is https: give the TLS context that verifies it")
        head = _head(target, via, headers, len(body))
        key = (target.scheme, target.host, target.port, proxy, id(tls) if target.scheme == "https" else 0)
        await self._slots.acquire()
        connection: _Connection | None = None
        try:
            connection = self._reused(key) or await self._connect(target, via, tls, connect_timeout_s)
            connection.send(head, body)
            while not connection.headers_done:
                await connection.wait(read_timeout_s)
        except BaseException:
            self._slots.release()
            if connection is not None:
                connection.close()
            raise
        return Response(self, key, connection, read_timeout_s)

    async def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def _reused(self, key: object) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.reusable() and now - connection.idle_since < self._idle_s:
                return connection
            connection.close()
        return None

    def _give_back(self, key: object, connection: _Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self._max_idle:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    async def _connect(
        self, target: _Target, via: _Proxy | None, tls: ssl.SSLContext | None, timeout_s: float
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        where = f"{via.host}:{via.port} (the proxy)" if via else f"{target.host}:{target.port}"
        try:
            async with asyncio.timeout(timeout_s):
                if via is not None and target.scheme == "https":
                    assert tls is not None
                    return await _tunnel(loop, target, via, tls)
                host, port = (via.host, via.port) if via else (target.host, target.port)
                secure = tls if target.scheme == "https" else None
                _, protocol = await loop.create_connection(
                    lambda: _Connection(loop), host, port, ssl=secure, server_hostname=target.host if secure else None
                )
                return protocol
        except TimeoutError:
            raise ConnectFailed(f"connecting to {where} took over {timeout_s:g} s") from None
        except ssl.SSLCertVerificationError as exc:
            raise ConnectFailed(f"{target.host}'s TLS certificate was not trusted ({exc.verify_message})") from None
        except (OSError, ssl.SSLError) as exc:
            if isinstance(exc, ConnectFailed):
                raise
            raise ConnectFailed(f"could not connect to {where} ({type(exc).__name__}: {exc})") from None

    def _target(self, url: str) -> _Target:
        found = self._targets.get(url)
        if found is None:
            found = self._targets[url] = _split(url)
        return found

    def _proxy(self, proxy: str) -> _Proxy:
        found = self._proxies.get(proxy)
        if found is None:
            parts = urlsplit(proxy)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"proxy {parts.scheme}://{parts.hostname}: only http:// proxies are supported")
            authorization = ""
            if parts.username is not None:
                pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
                authorization = "Basic " + base64.b64encode(pair).decode()
            found = self._proxies[proxy] = _Proxy(parts.hostname, parts.port or 80, authorization)
        return found


class _TunnelOpening(asyncio.Protocol):
    """The proxy's answer to CONNECT: bytes up to the blank line, nothing parsed before it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.head = bytearray()
        self.answered: asyncio.Future[bytes] = loop.create_future()

    def data_received(self, data: bytes) -> None:
        self.head += data
        if self.answered.done():
            return
        if b"\r\n\r\n" in self.head:
            self.answered.set_result(bytes(self.head))
        elif len(self.head) > _MAX_HEAD:
            self.answered.set_exception(ConnectFailed(f"the proxy's answer to CONNECT is over {_MAX_HEAD} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_exception(ConnectFailed("the proxy closed the connection before it answered CONNECT"))


async def _tunnel(loop: asyncio.AbstractEventLoop, target: _Target, via: _Proxy, tls: ssl.SSLContext) -> _Connection:
    """A TCP connection to the proxy, CONNECT to the origin, then TLS with the origin inside it."""
    transport, opening = await loop.create_connection(lambda: _TunnelOpening(loop), via.host, via.port)
    try:
        authority = f"{_bracketed(target.host)}:{target.port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if via.authorization:
            lines.append(f"Proxy-Authorization: {via.authorization}")
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await opening.answered
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].startswith("2"):
            raise ConnectFailed(f"the proxy {via.host}:{via.port} refused CONNECT {authority}: {status_line[:200]!r}")
        if not head.endswith(b"\r\n\r\n"):
            raise ConnectFailed(f"the proxy {via.host}:{via.port} sent bytes after its answer to CONNECT")
        connection = _Connection(loop)
        secured = await loop.start_tls(transport, connection, tls, server_hostname=target.host)
        if secured is None:
            raise ConnectFailed(f"the TLS handshake with {target.host} through the proxy did not complete")
        connection.connection_made(secured)
        return connection
    except BaseException:
        transport.close()
        raise


def _split(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url[:200]!r}")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = _bracketed(parts.hostname)
    return _Target(parts.scheme, parts.hostname, port, path, host if port == default else f"{host}:{port}")


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _head(target: _Target, via: _Proxy | None, headers: Mapping[str, str], length: int) -> bytes:
    if via is not None and target.scheme == "http":  # a plain request through the proxy: absolute form
        line = f"POST http://{target.host_header}{target.path} HTTP/1.1\r\n"
        extra = f"Proxy-Authorization: {via.authorization}\r\n" if via.authorization else ""
    else:
        line, extra = f"POST {target.path} HTTP/1.1\r\n", ""
    fields = [line, f"Host: {target.host_header}\r\nContent-Length: {length}\r\nAccept-Encoding: gzip, deflate\r\n"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"header {name[:60]!r} has a line break or a colon where it may not")
        fields.append(f"{name}: {value}\r\n")
    fields.append(extra)
    fields.append("\r\n")
    return "".join(fields).encode()
