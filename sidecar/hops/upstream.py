"""The sidecar's HTTP client to model providers: one aiohttp session, TLS verified.

Certificates are checked against the system's trust store, or the CA file a provider's entry
in models.json names (`ca_file`); never skipped. The standard proxy variables (HTTPS_PROXY,
HTTP_PROXY, NO_PROXY, lower case too) are honoured, read from the sidecar's environment at
start-up and resolved once per provider URL: aiohttp's own `trust_env=True` would look them
up, and ~/.netrc, in a worker thread on every request (two thread hops a call, measured in
benchmarks/README.md), and a netrc entry could put other credentials on a provider request.
The session is made on first use (inside the running loop) and closed when the gateway stops.
It keeps its connections alive between calls (a pool per provider host) and keeps no cookies:
a provider's Set-Cookie never reaches another call, or another agent's.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping

import aiohttp
from yarl import URL


class Upstream:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = dict(environ or {})
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._proxies: dict[str, str | None] = {}
        self._urls: dict[str, URL] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def url(self, url: str) -> URL:
        """`url` parsed once (a provider's few URLs serve every call; parsing one per call showed
        in the gateway's profile)."""
        found = self._urls.get(url)
        if found is None:
            found = self._urls[url] = URL(url)
        return found

    def proxy_for(self, url: str) -> str | None:
        """The proxy the standard variables name for `url` (None: connect directly)."""
        if url in self._proxies:
            return self._proxies[url]
        parsed = URL(url)
        scheme = parsed.scheme
        proxy = self._variable(f"{scheme}_proxy") or None
        if proxy is not None and _bypassed(parsed.host or "", self._variable("no_proxy")):
            proxy = None
        self._proxies[url] = proxy
        return proxy

    def timeouts(self, timeout_s: float) -> aiohttp.ClientTimeout:
        """A provider's timeouts: connecting (10 s at most) and between two reads of its answer."""
        found = self._timeouts.get(timeout_s)
        if found is None:
            found = aiohttp.ClientTimeout(total=None, sock_connect=min(10.0, timeout_s), sock_read=timeout_s)
            self._timeouts[timeout_s] = found
        return found

    def _variable(self, name: str) -> str:
        return (self._environ.get(name) or self._environ.get(name.upper()) or "").strip()

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=256, ttl_dns_cache=60, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
                cookie_jar=aiohttp.DummyCookieJar(),
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
