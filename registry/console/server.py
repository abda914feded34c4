"""Serves the web console on its own port (`--console-listen`), beside the registry's gRPC
ports and in the same process, so it reads the same domain objects the servicers use.

Plain HTTP only on loopback (registry.config refuses otherwise); with `--console-tls-cert`
and `--console-tls-key` it serves HTTPS, and its cookies are then Secure.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from aiohttp import web

from meshwarden.addresses import HostPort
from meshwarden.registry.api.controls import ControlsApi
from meshwarden.registry.console.actions import Actions
from meshwarden.registry.console.doors import Doors
from meshwarden.registry.console.guard import guard
from meshwarden.registry.console.login_limits import FailedLogins
from meshwarden.registry.console.logins import Logins
from meshwarden.registry.console.pages import Pages
from meshwarden.registry.console.reads import Reads, Sources
from meshwarden.registry.console.render import environment
from meshwarden.registry.errors import RegistryError
from meshwarden.registry.operators import OperatorCredential

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


class ConsoleBindError(RegistryError):
    """The console's port could not be bound, or its TLS files not read; says which and why."""


class ConsoleServer:
    def __init__(
        self,
        sources: Sources,
        controls: ControlsApi,
        credentials: tuple[OperatorCredential, ...],
        *,
        idle_s: float,
        tls_files: tuple[Path, Path] | None = None,
    ) -> None:
        self._tls_files = tls_files
        env = environment()
        logins = Logins(sources.clock, idle_s=idle_s)
        tls = tls_files is not None
        self.app = web.Application(middlewares=[guard(logins, tls=tls)], client_max_size=64 * 1024)
        doors = Doors(env, logins, FailedLogins(sources.clock), credentials, sources.audit, tls=tls)
        pages = Pages(env, Reads(sources), Actions(sources.approvals, controls))
        self.app.add_routes(
            [*doors.routes(), *pages.routes(), web.static("/static", STATIC), web.get("/favicon.ico", _no_icon)]
        )
        self._runner: web.AppRunner | None = None

    async def start(self, address: HostPort) -> HostPort:
        """Serves on `address`; the address bound (its real port when given 0)."""
        context = self._tls_context()
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, address.host, address.port, ssl_context=context, reuse_port=False)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConsoleBindError(
                f"cannot listen on {address} for the web console: {exc.strerror or exc}; give --console-listen "
                "another port (0 picks a free one), or off"
            ) from exc
        self._runner = runner
        bound = HostPort(address.host, int(runner.addresses[0][1]))
        log.info("web console on %s://%s (log in with operator.token or viewer.token)", _scheme(context), bound)
        return bound

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _tls_context(self) -> ssl.SSLContext | None:
        if self._tls_files is None:
            return None
        cert, key = self._tls_files
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConsoleBindError(f"the console's TLS files {cert} and {key} cannot be used: {exc}") from exc
        return context


async def _no_icon(_request: web.Request) -> web.Response:
    return web.Response(status=204)


def _scheme(context: ssl.SSLContext | None) -> str:
    return "http" if context is None else "https"
