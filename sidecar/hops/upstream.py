"""The sidecar's HTTP client to model providers: kept-alive connections, TLS verified.

Requests go through `Http1Client` (hops/http1_client.py says why not aiohttp's client).
Certificates are checked against the system's trust store, or the CA file a provider's entry
in models.json names (`ca_file`); never skipped. The standard proxy variables (HTTPS_PROXY,
HTTP_PROXY, NO_PROXY, lower case too) are honoured, read from the sidecar's environment at
start-up and resolved once per provider URL (aiohttp's `trust_env=True`, used before, looked
them up, and ~/.netrc, in a worker thread on every request, and a netrc entry could have put
other credentials on a provider request). Connections are kept alive between calls (a pool
per provider origin); no cookies are kept: a provider's Set-Cookie never reaches another call.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from meshwarden.sidecar.hops.http1_client import Http1Client, Response


class Upstream:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = dict(environ or {})
        self._client = Http1Client()
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._proxies: dict[str, str | None] = {}

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], *, ca_file: str, timeout_s: float
    ) -> Response:
        """POSTs `body` and waits for the answer's head. Connecting may take 10 s at most (and
        never more than `timeout_s`), each read of the answer `timeout_s`."""
        tls = await self.tls(ca_file) if url.startswith("https:") else None
        return await self._client.post(
            url,
            body,
            headers,
            tls=tls,
            proxy=self.proxy_for(url),
            connect_timeout_s=min(10.0, timeout_s),
            read_timeout_s=timeout_s,
        )

    def proxy_for(self, url: str) -> str | None:
        """The proxy the standard variables name for `url` (None: connect directly)."""
        if url in self._proxies:
            return self._proxies[url]
        parsed = urlsplit(url)
        proxy = self._variable(f"{parsed.scheme}_proxy") or None
        if proxy is not None and _bypassed(parsed.hostname or "", self._variable("no_proxy")):
            proxy = None
        self._proxies[url] = proxy
        return proxy

    def _variable(self, name: str) -> str:
        return (self._environ.get(name) or self._environ.get(name.upper()) or "").strip()

    async def tls(self, ca_file: str) -> ssl.SSLContext:
        """The verifying TLS context for a provider ("" for the system's trust store); built
        once per CA file, in a worker thread (it reads files)."""
        found = self._contexts.get(ca_file)
        if found is None:
            found = await asyncio.to_thread(ssl.create_default_context, cafile=ca_file or None)
            self._contexts[ca_file] = found
        return found

    async def close(self) -> None:
        await self._client.close()


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether NO_PROXY exempts `host`: "*", the host itself, or a domain it is under."""
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        domain = entry.lstrip(".").split(":")[0]
        if host.lower() == domain or host.lower().endswith("." + domain):
            return True
    return False
