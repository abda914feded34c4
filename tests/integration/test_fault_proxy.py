"""The chaos tests' fault proxy does what each fault says, checked against a plain TCP echo server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.integration.fault_proxy import FaultProxy


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    async with server, FaultProxy(f"127.0.0.1:{server.sockets[0].getsockname()[1]}") as p:
        yield p


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = proxy.address.rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, wait_s: float = 2
) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), wait_s)


async def test_passes_bytes_both_ways(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"hello") == b"hello"
    assert proxy.open_connections == 1


async def test_reset_all_resets_open_connections_and_new_ones(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    await roundtrip(reader, writer, b"a")
    proxy.reset_all()
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await roundtrip(reader, writer, b"b")
    reader, writer = await connect(proxy)
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await roundtrip(reader, writer, b"c")
    proxy.pass_through()
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"d") == b"d"


async def test_blackhole_holds_bytes_until_it_clears(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    await roundtrip(reader, writer, b"a")
    proxy.blackhole()
    with pytest.raises(TimeoutError):
        await roundtrip(reader, writer, b"held", wait_s=0.3)
    proxy.pass_through()
    assert await asyncio.wait_for(reader.readexactly(4), 2) == b"held"


async def test_strand_open_silences_open_connections_for_good_and_lets_new_ones_pass(proxy: FaultProxy) -> None:
    old_reader, old_writer = await connect(proxy)
    await roundtrip(old_reader, old_writer, b"a")
    proxy.strand_open()
    with pytest.raises(TimeoutError):
        await roundtrip(old_reader, old_writer, b"lost", wait_s=0.3)
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"new") == b"new"
    proxy.pass_through()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(old_reader.readexactly(4), 0.3)


async def test_drop_after_resets_once_the_byte_count_is_reached(proxy: FaultProxy) -> None:
    proxy.drop_after(4)
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"abc") == b"abc"
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await roundtrip(reader, writer, b"defg")


async def test_latency_delays_but_delivers(proxy: FaultProxy) -> None:
    proxy.add_latency(0.2)
    reader, writer = await connect(proxy)
    with pytest.raises(TimeoutError):
        await roundtrip(reader, writer, b"slow", wait_s=0.1)
    assert await asyncio.wait_for(reader.readexactly(4), 2) == b"slow"
