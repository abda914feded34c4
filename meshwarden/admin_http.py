"""The admin HTTP port of the sidecar and the registry: /metrics, /healthz, /readyz.

- /metrics: Prometheus text (or OpenMetrics when the scraper asks for it) of the component's
  own MetricsRegistry, collected and written out in a worker thread but for what the event
  loop owns (meshwarden.metrics_registry).
- /healthz: 200 while the process runs its event loop (a liveness probe).
- /readyz: 200 when the component would serve calls, the same readiness its gRPC health
  service reports; 503 with the reason otherwise.
- views the component adds, each a JSON document read at request time (the sidecar's /config
  and /status, sidecar/inspection.py). The HTTP Date header doubles as the component's clock
  for `meshwarden check`.
While it serves, it also measures the event loop's lag (meshwarden.loop_lag) into the same
registry, so every component with an admin port exports it.

Plain HTTP, loopback by default: it reveals metric labels (agent, capability and instance
names) and nothing secret, and takes no writes. Beyond loopback, restrict who reaches it
(a network policy, a firewall, or a scraping proxy with TLS), as README.md says.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from meshwarden.addresses import HostPort
from meshwarden.loop_lag import LoopLag
from meshwarden.metrics_registry import MetricsRegistry
from meshwarden.tasks import cancel_all, supervise

log = logging.getLogger(__name__)

# "" when ready, else why not (shown in the 503 body).
Readiness = Callable[[], str]
# A read-only JSON document, by path ("/status"), built when asked.
View = Callable[[], object]


class AdminBindError(OSError):
    """The admin port could not be bound; the message names the address and what to do."""


class AdminServer:
    def __init__(
        self, component: str, registry: MetricsRegistry, readiness: Readiness, views: Mapping[str, View] | None = None
    ) -> None:
        self._component, self._registry, self._readiness = component, registry, readiness
        self._views = dict(views or {})
        self._runner: web.AppRunner | None = None
        self._lag = LoopLag(registry)
        self._probe: asyncio.Task[None] | None = None

    async def start(self, address: HostPort) -> HostPort:
        """Serves on `address`; returns the address bound (its real port when given 0)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        for path, view in self._views.items():
            app.router.add_get(path, self._json(view))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, address.host, address.port, reuse_port=False)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise AdminBindError(
                f"cannot listen on {address} for the {self._component}'s admin HTTP port: {exc.strerror or exc}; "
                "is another one on this host using it? give each its own --admin-listen (port 0 picks a free "
                "one), or `off`"
            ) from exc
        self._runner = runner
        self._probe = supervise("event-loop-lag", self._lag.run)
        bound = runner.addresses[0]
        if not address.is_loopback:
            log.warning(
                "admin HTTP port (metrics, health) on %s is plain HTTP beyond loopback: restrict who reaches it",
                address,
            )
        return HostPort(address.host, int(bound[1]))

    async def serve(self, address: HostPort | None) -> HostPort | None:
        """Starts on `address`, or not at all when it is None (`--admin-listen off`), and says
        which in the log; the bound address, or None. AdminBindError when it cannot bind."""
        if address is None:
            log.info("admin HTTP port off (--admin-listen off): no /metrics, /healthz, /readyz")
            return None
        bound = await self.start(address)
        log.info("admin HTTP on http://%s (/metrics, /healthz, /readyz)", bound)
        return bound

    async def stop(self) -> None:
        if self._probe is not None:
            await cancel_all([self._probe])
            self._probe = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        # What the loop owns (breakers, the catalog) is read here, on the loop; everything else
        # is collected and written out in a worker thread: reading /proc and walking every
        # labelled histogram, then the text of a busy sidecar (hundreds of kB), held the loop
        # for tens of milliseconds per scrape on a loaded machine.
        collected = _Collected(self._registry.on_loop(), self._registry)
        body = await asyncio.to_thread(encoder, collected)
        return web.Response(body=body, headers={"Content-Type": content_type})

    @staticmethod
    def _json(view: View) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(_request: web.Request) -> web.Response:
            return web.json_response(view(), dumps=lambda v: json.dumps(v, indent=2))

        return handle

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        reason = self._readiness()
        if reason:
            return web.Response(status=503, text=f"not ready: {reason}\n")
        return web.Response(text="ready\n")


class _Collected(CollectorRegistry):
    """What the encoder writes out (it only calls `collect`, in the worker thread): the metrics
    read on the loop, then the registry's others, collected there."""

    def __init__(self, read_on_loop: Sequence[Metric], registry: MetricsRegistry) -> None:
        super().__init__(auto_describe=False)
        self._read_on_loop, self._registry = read_on_loop, registry

    def collect(self) -> Iterator[Metric]:
        yield from self._read_on_loop
        yield from self._registry.elsewhere()
