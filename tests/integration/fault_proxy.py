"""A TCP proxy the chaos tests put between real processes and break on purpose while they run.

It forwards bytes both ways between each accepted connection and `upstream`, and obeys one
fault at a time, which the test may change at any moment:

    pass_through()     forward everything (the starting state)
    add_latency(s)     hold each chunk `s` seconds before forwarding it, in both directions
    reset_new()        answer every new connection with a TCP reset; open ones carry on
    reset_all()        reset every open connection now, and every new one while the fault lasts
    blackhole()        accept connections but forward nothing, on open and new ones alike: bytes
                       are held, not lost, as TCP would retransmit them, and flow again when the
                       fault clears (a partition that heals)
    drop_after(n)      reset each connection once it has carried `n` bytes towards upstream
    strand_open()      open connections go silent for good, new ones pass: a NAT or stateful
                       firewall that lost its connection table, so no reset ever arrives

Working at the TCP level keeps the processes untouched: the same binaries, TLS and gRPC run
as in production, and only the network between them misbehaves. A reset is a real RST
(SO_LINGER 0), which is what a crashed peer or a stateful firewall sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass

from meshwarden.addresses import parse_host_port

_CHUNK = 65536


@dataclass(frozen=True)
class Fault:
    """What the proxy does to traffic now; built by the FaultProxy methods."""

    name: str = "pass"
    latency_s: float = 0.0
    reset_new: bool = False
    blackhole: bool = False
    drop_after_bytes: int = 0


@dataclass(eq=False)  # identity: each link is one pair of connections
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    flowing: asyncio.Event
    sent_upstream: int = 0
    stranded: bool = False


class FaultProxy:
    def __init__(self, upstream: str = "") -> None:
        self.upstream = upstream  # HOST:PORT; may be set after start(), before the first connection
        self.fault = Fault()
        self.accepted = 0  # connections accepted so far
        self.reset = 0  # connections this proxy reset
        self._flowing = asyncio.Event()  # for connections not yet linked to upstream
        self._flowing.set()
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._closed = False
        self.address = ""

    async def start(self, host: str = "127.0.0.1") -> str:
        """Listens on an ephemeral port of `host`; returns HOST:PORT."""
        self._server = await asyncio.start_server(self._accept, host, 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"{host}:{port}"
        return self.address

    async def close(self) -> None:
        """Closes every connection and waits for their handlers (cancelling asyncio's
        connection callbacks would only log noise)."""
        self._closed = True
        if self._server is not None:
            self._server.close()
        self._flowing.set()  # held connections wake up, see the proxy closed and end
        for link in list(self._links):
            link.flowing.set()
            self._links.discard(link)
            _abort(link.client, rst=False)
            _abort(link.upstream, rst=False)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> FaultProxy:
        if not self.address:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # ----- faults

    def pass_through(self) -> None:
        self._set(Fault())

    def add_latency(self, seconds: float) -> None:
        self._set(Fault(name=f"latency {seconds}s", latency_s=seconds))

    def reset_new(self) -> None:
        self._set(Fault(name="reset new", reset_new=True))

    def reset_all(self) -> None:
        self._set(Fault(name="reset all", reset_new=True))
        for link in list(self._links):
            self._reset(link)

    def blackhole(self) -> None:
        self._set(Fault(name="blackhole", blackhole=True))

    def drop_after(self, n_bytes: int) -> None:
        self._set(Fault(name=f"drop after {n_bytes} bytes", drop_after_bytes=n_bytes))

    def strand_open(self) -> None:
        for link in self._links:
            link.stranded = True
        self._set(Fault(name="strand open connections"))

    def _set(self, fault: Fault) -> None:
        if self._closed:
            raise RuntimeError("the fault proxy is closed")
        self.fault = fault
        for event in [self._flowing, *(link.flowing for link in self._links if not link.stranded)]:
            if fault.blackhole:
                event.clear()
            else:
                event.set()
        for link in self._links:
            if link.stranded:
                link.flowing.clear()

    # ----- forwarding

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.accepted += 1
        try:
            if self.fault.reset_new or self._closed:
                self.reset += 1
                _abort(writer, rst=True)
                return
            await self._flowing.wait()  # a blackhole holds the connection open and silent
            if self._closed or self.fault.reset_new:
                _abort(writer, rst=True)
                return
            upstream = parse_host_port(self.upstream, what="fault proxy upstream")
            try:
                up_reader, up_writer = await asyncio.open_connection(upstream.host, upstream.port)
            except OSError:
                _abort(writer, rst=True)  # upstream down: the client sees a refused-like reset
                return
            flowing = asyncio.Event()
            flowing.set()
            link = _Link(writer, up_writer, flowing)
            self._links.add(link)
            try:
                await asyncio.gather(
                    self._pump(reader, up_writer, link, towards_upstream=True),
                    self._pump(up_reader, writer, link, towards_upstream=False),
                )
            finally:
                self._links.discard(link)
                _abort(writer, rst=False)
                _abort(up_writer, rst=False)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link, *, towards_upstream: bool
    ) -> None:
        try:
            while True:
                chunk = await reader.read(_CHUNK)
                if not chunk:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                await link.flowing.wait()
                if link not in self._links:
                    return  # reset while this chunk was held
                if self.fault.latency_s:
                    await asyncio.sleep(self.fault.latency_s)
                if towards_upstream and self.fault.drop_after_bytes:
                    room = self.fault.drop_after_bytes - link.sent_upstream
                    if len(chunk) >= room:
                        if room > 0:
                            writer.write(chunk[:room])
                            link.sent_upstream += room
                        self._reset(link)
                        return
                writer.write(chunk)
                if towards_upstream:
                    link.sent_upstream += len(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            self._reset(link)

    def _reset(self, link: _Link) -> None:
        if link in self._links:
            self._links.discard(link)
            self.reset += 1
        _abort(link.client, rst=True)
        _abort(link.upstream, rst=True)


def _abort(writer: asyncio.StreamWriter, *, rst: bool) -> None:
    """Closes at once; with `rst`, as a TCP reset (SO_LINGER on, zero timeout)."""
    transport = writer.transport
    if transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if rst and sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
