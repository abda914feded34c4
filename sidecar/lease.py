"""Keep the local agent's instance in the registry catalog: register, renew the lease every
heartbeat interval, register again when the lease was lost, deregister on clean shutdown.

While the registry is unreachable the loop keeps trying at the heartbeat interval; calls
keep flowing meanwhile, since routing does not depend on the registry being up.

RegisterAgent waits for the registry to hold what the agent declared: `confirmed(generation)`
compares numbers (each registration of the local agent has one) rather than waiting on an
event that might have been set, and cleared, before the wait began, so a confirmation that
came first is never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.v1 import registry_pb2, registry_pb2_grpc

log = logging.getLogger(__name__)

_RPC_TIMEOUT_S = 5.0
_FALLBACK_INTERVAL_S = 2.0


class Lease:
    def __init__(self, registry: Callable[[], registry_pb2_grpc.RegistryStub], local: LocalAgent) -> None:
        self._registry, self._local = registry, local
        self.registered = asyncio.Event()  # set while the registry holds our current registration
        self.confirmed_generation = 0  # the latest registration of the local agent the registry holds
        self._confirmation = asyncio.Event()  # set, then replaced, at each confirmation
        self._interval_s = _FALLBACK_INTERVAL_S
        self._outage = False

    async def run(self) -> None:
        while True:
            if self._local.registration is None:
                await self._local.changed.wait()
            self._local.changed.clear()
            if await self._register():
                await self._renew_until_lost()
            else:
                await self._wait_or_change(self._interval_s)

    def close(self) -> None:
        """The sidecar is stopping: registrations from now on are refused (LocalAgent.close)."""
        self._local.close()

    async def withdraw(self) -> None:
        """Takes the instance out of the catalog now (its agent is gone); registering again is
        the agent's move (LocalAgent.register sets `changed`, and the loop registers)."""
        self._local.withdraw()
        await self.deregister()
        self.registered.clear()

    async def confirmed(self, generation: int, timeout_s: float) -> bool:
        """Waits until the registry holds registration `generation` (or a later one) of the
        local agent; False when it has not within `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                while self.confirmed_generation < generation:
                    await self._confirmation.wait()  # the event read in the same step as the number
        except TimeoutError:
            return False
        return True

    async def deregister(self) -> None:
        if not self.registered.is_set():
            return
        try:
            await self._registry().Deregister(
                registry_pb2.DeregisterRequest(instance_id=self._local.instance_id), timeout=1.0
            )
            log.info("deregistered instance %s", self._local.instance_id)
        except grpc.aio.AioRpcError as err:
            log.warning(
                "could not deregister instance %s: %s; its lease will expire", self._local.instance_id, err.details()
            )

    async def _register(self) -> bool:
        generation = self._local.generation  # read with the instance, in the same step
        instance = self._local.instance_proto()
        if instance is None:
            return False
        try:
            reply = await self._registry().Register(
                registry_pb2.RegisterRequest(instance=instance), timeout=_RPC_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as err:
            self.registered.clear()
            self._report_failure("register", err)
            return False
        self._interval_s = reply.heartbeat_interval.ToTimedelta().total_seconds() or _FALLBACK_INTERVAL_S
        self._outage = False
        self.registered.set()
        self._confirm(generation)
        log.info(
            "registered %s %s as instance %s (catalog revision %d, heartbeat every %.1f s)",
            instance.agent,
            instance.version,
            reply.instance_id,
            reply.revision,
            self._interval_s,
        )
        return True

    def _confirm(self, generation: int) -> None:
        self.confirmed_generation = max(self.confirmed_generation, generation)
        self._confirmation.set()
        self._confirmation = asyncio.Event()

    async def _renew_until_lost(self) -> None:
        while True:
            if await self._wait_or_change(self._interval_s):
                return  # the agent registered something new: register it
            try:
                await self._registry().Renew(
                    registry_pb2.RenewRequest(instance_id=self._local.instance_id), timeout=_RPC_TIMEOUT_S
                )
                if self._outage:
                    log.info("registry reachable again; lease of %s renewed", self._local.instance_id)
                    self._outage = False
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.NOT_FOUND:
                    log.warning("lease of %s was lost (%s); registering again", self._local.instance_id, err.details())
                    self.registered.clear()
                    return
                self._report_failure("renew", err)

    async def _wait_or_change(self, seconds: float) -> bool:
        """Sleeps `seconds`; True when the registration changed meanwhile."""
        try:
            await asyncio.wait_for(self._local.changed.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _report_failure(self, what: str, err: grpc.aio.AioRpcError) -> None:
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            if not self._outage:
                log.warning(
                    "registry unreachable (%s failed: %s); retrying every %.1f s", what, err.details(), self._interval_s
                )
            self._outage = True
        else:
            log.error(
                "registry refused %s of %s: %s: %s", what, self._local.instance_id, err.code().name, err.details()
            )
