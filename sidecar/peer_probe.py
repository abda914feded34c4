"""Who a peer sidecar says it is, asked only after a connection to it failed.

gRPC tells a TLS handshake that failed on the server's identity from a refused connection
only in its own wording, which nothing here parses. So when no connection could be made,
peer.Send asks the peer directly: a TLS handshake of its own that checks the certificate
chains to the trust bundle but not its name, and reads the SPIFFE ID the certificate carries.
A peer that proves another identity than the catalog lists is an impostor or a stale entry
(PeerIdentityMismatch); anything else stays "could not connect". It never sends a call.
"""

from __future__ import annotations

import asyncio
import ssl

from meshwarden.addresses import AddressError, parse_host_port


async def presented_spiffe_id(address: str, trust_bundle_pem: bytes, timeout_s: float) -> str | None:
    """The SPIFFE ID in the certificate the peer at `address` presents, if it presents one that
    chains to the trust bundle within `timeout_s`; None otherwise."""
    try:
        where = parse_host_port(address, what="peer address")
        context = ssl.create_default_context(cadata=trust_bundle_pem.decode())
    except (AddressError, ssl.SSLError, ValueError):
        return None
    context.check_hostname = False  # the name is what is being asked; the chain is still checked
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(where.host, where.port, ssl=context)
    except (OSError, TimeoutError):  # ssl.SSLError is an OSError
        return None
    try:
        certificate = writer.get_extra_info("peercert") or {}
    finally:
        writer.close()
    names = certificate.get("subjectAltName", ())
    return next((value for kind, value in names if kind == "URI" and value.startswith("spiffe://")), None)
