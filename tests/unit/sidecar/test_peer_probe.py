"""peer_probe against a real TLS server: the SPIFFE ID a peer presents, when its certificate
chains to the trust bundle; nothing otherwise."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meshwarden.clock import SystemClock
from meshwarden.registry.issuer import Issuer
from meshwarden.sidecar.peer_probe import presented_spiffe_id

TD = "meshwarden.local"
BILLING = f"spiffe://{TD}/agent/billing"


@pytest.fixture
async def issuer_and_peer(tmp_path: Path) -> AsyncIterator[tuple[Issuer, str]]:
    issuer = Issuer.ephemeral(TD, SystemClock())
    svid = issuer.issue(BILLING, 600)
    (tmp_path / "chain.pem").write_bytes(svid.cert_chain_pem)
    (tmp_path / "key.pem").write_bytes(svid.private_key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield issuer, f"127.0.0.1:{port}"


async def test_the_peer_s_spiffe_id_when_it_chains_to_the_bundle(issuer_and_peer: tuple[Issuer, str]) -> None:
    issuer, address = issuer_and_peer
    bundle = issuer.issue(f"spiffe://{TD}/agent/frontdesk", 600).trust_bundle_pem
    assert await presented_spiffe_id(address, bundle, 5) == BILLING
    stranger = Issuer.ephemeral(TD, SystemClock()).issue(f"spiffe://{TD}/agent/x", 600).trust_bundle_pem
    assert await presented_spiffe_id(address, stranger, 5) is None  # another CA proves nothing


async def test_nothing_from_a_closed_port_or_a_bad_address(issuer_and_peer: tuple[Issuer, str]) -> None:
    issuer, _ = issuer_and_peer
    bundle = issuer.issue(f"spiffe://{TD}/agent/frontdesk", 600).trust_bundle_pem
    assert await presented_spiffe_id("127.0.0.1:1", bundle, 5) is None
    assert await presented_spiffe_id("not an address", bundle, 5) is None
