"""The sidecar watches its agent: grpc.health.v1 on the agent's callback endpoint.

Once the agent has registered, the sidecar checks its health every `interval_s`. After
`misses` failed checks in a row (the process died, or hangs) the agent is gone: its
instance leaves the catalog (deregistered, so no caller is routed to it) and the sidecar
reports not ready, saying why, instead of staying HEALTHY while every call fails. When the
agent starts again it registers again by itself (the SDK does, and so must agents in other
languages), and everything comes back: the registration restarts the lease, and the next
good check clears the verdict.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meshwarden.sidecar.agent_app import AgentApp
from meshwarden.sidecar.local_agent import LocalAgent

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class WatchSettings:
    interval_s: float = 1.0
    timeout_s: float = 1.0
    misses: int = 3


class AgentWatch:
    def __init__(
        self,
        app: AgentApp,
        local: LocalAgent,
        withdraw: Callable[[], Awaitable[None]],
        on_change: Callable[[], Awaitable[None]],
        settings: WatchSettings,
    ) -> None:
        self._app, self._local, self._withdraw, self._on_change = app, local, withdraw, on_change
        self._settings = settings
        self.gone_because = ""  # why the agent counts as gone ("" while it answers)

    async def run(self) -> None:
        misses = 0
        registered = self._local.subscribe()
        while True:
            if self._local.registration is None:  # nothing to watch until the agent registers
                await registered.wait()
            registered.clear()
            await asyncio.sleep(self._settings.interval_s)
            problem = await self._check()
            if not problem:
                misses = 0
                if self.gone_because:
                    log.info("agent %s answers again on %s", self._local.name, self._app.address)
                    self.gone_because = ""
                    await self._on_change()
                continue
            misses += 1
            if misses >= self._settings.misses and not self.gone_because and self._local.registration is not None:
                self.gone_because = (
                    f"agent {self._local.name} stopped answering on {self._app.address} ({problem}); "
                    "its instance left the catalog until it registers again"
                )
                log.error("%s", self.gone_because)
                await self._withdraw()
                await self._on_change()

    async def _check(self) -> str:
        """ "" when the agent says SERVING, else what went wrong."""
        stub = health_pb2_grpc.HealthStub(self._app.channel)
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(), timeout=self._settings.timeout_s, metadata=self._app.auth
            )
        except grpc.aio.AioRpcError as err:
            return err.code().name
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
        return ""
