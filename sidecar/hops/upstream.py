"""The sidecar's HTTP client to model providers: one aiohttp session, TLS verified.

Certificates are checked against the system's trust store, or the CA file a provider's entry
in models.json names (`ca_file`); never skipped. `trust_env=True` honours HTTPS_PROXY,
HTTP_PROXY and NO_PROXY as the standard library reads them. The session is made on first use
(inside the running loop) and closed when the gateway stops.
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp


class Upstream:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=256, ttl_dns_cache=60, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=True, auto_decompress=True, skip_auto_headers=("User-Agent",)
            )
        return self._session

    async def tls(self, ca_file: str) -> ssl.SSLContext:
        """The verifying TLS context for a provider ("" for the system's trust store); built
        once per CA file, in a worker thread (it reads files)."""
        found = self._contexts.get(ca_file)
        if found is None:
            found = await asyncio.to_thread(ssl.create_default_context, cafile=ca_file or None)
            self._contexts[ca_file] = found
        return found

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
