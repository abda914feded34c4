"""Keep this sidecar's agent instance registered with the local Consul agent.

The health check is a TTL check the sidecar renews, not a gRPC check Consul runs: the peer
port requires a client certificate of the mesh (an agent SVID), which a Consul agent does not
hold, and a check that skipped client authentication would need a second, plaintext port.
The sidecar also knows what no probe can see: whether a policy bundle is active. So every
TTL/3 it reports "passing", or "warning" (not routable, yet never reaped) while no bundle is
active, with a note saying why. A sidecar that dies stops renewing: the check turns critical
after one TTL, the instance drops out of every `?passing` query (so out of routing), and
Consul deregisters it after DeregisterCriticalServiceAfter. On a clean stop the sidecar
deregisters at once. When the agent forgot the check (it restarted, or reaped the service)
the next renewal fails and the sidecar registers again.

Schema documents are written to KV before the service is registered, so a watcher that sees
the instance can read its contracts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from meshwarden.sidecar.discovery.consul_api import ConsulApi, ConsulUnavailable, TtlCheck
from meshwarden.sidecar.discovery.consul_service import (
    MetaTooLarge,
    check_id,
    schema_document,
    schema_key,
    service_definition,
)
from meshwarden.sidecar.local_agent import LocalAgent

log = logging.getLogger(__name__)

Health = Callable[[], tuple[str, str]]  # ("passing" | "warning", a note for people)


class ConsulRegistration:
    def __init__(
        self,
        api: ConsulApi,
        local: LocalAgent,
        health: Health,
        *,
        ttl_s: float,
        deregister_critical_after_s: float,
    ) -> None:
        self._api, self._local, self._health = api, local, health
        self._ttl_s, self._deregister_after_s = ttl_s, deregister_critical_after_s
        self._changed = local.subscribe()
        self._written: set[str] = set()  # schema hashes already in KV
        self._registered = False
        self._outage = False

    @property
    def renew_interval_s(self) -> float:
        return self._ttl_s / 3

    async def run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            if not await self._register():
                await self._wait_or_change(self.renew_interval_s)
                self._changed.set()  # try again, with whatever is registered by then
                continue
            await self._renew_until_lost()
            self._changed.set()

    async def deregister(self) -> None:
        if not self._registered:
            return
        try:
            await self._api.deregister(self._local.instance_id)
            log.info("deregistered instance %s from Consul", self._local.instance_id)
        except ConsulUnavailable as exc:
            log.warning(
                "could not deregister %s from Consul (%s); its check turns critical within %.1f s and Consul "
                "removes it after %.0f s",
                self._local.instance_id,
                exc,
                self._ttl_s,
                self._deregister_after_s,
            )

    async def _register(self) -> bool:
        registration = self._local.registration
        if registration is None:
            return False
        status, note = self._health()
        check = TtlCheck(
            check_id=check_id(self._local.instance_id),
            name=f"meshwarden sidecar of {self._local.name}",
            ttl_s=self._ttl_s,
            deregister_critical_after_s=self._deregister_after_s,
            status=status,
            notes=note,
        )
        try:
            definition = service_definition(self._local, registration, check)
        except MetaTooLarge as exc:
            log.error("cannot register %s with Consul: %s", self._local.instance_id, exc)
            return False
        try:
            for spec in registration.capabilities.values():
                if spec.schema_hash not in self._written:
                    await self._api.kv_put(schema_key(spec.schema_hash), schema_document(spec))
                    self._written.add(spec.schema_hash)
            await self._api.register(definition)
        except ConsulUnavailable as exc:
            self._report_failure("register", exc)
            return False
        self._registered, self._outage = True, False
        log.info(
            "registered %s %s with Consul at %s as %s (TTL check %s, renewed every %.1f s)",
            definition.name,
            definition.meta.get("meshwarden-version", ""),
            self._api.base_url,
            definition.service_id,
            check.check_id,
            self.renew_interval_s,
        )
        return True

    async def _renew_until_lost(self) -> None:
        while True:
            if await self._wait_or_change(self.renew_interval_s):
                return  # the agent registered something new: register that
            status, note = self._health()
            try:
                known = await self._api.update_check(check_id(self._local.instance_id), status, note)
            except ConsulUnavailable as exc:
                self._report_failure("renew the check of", exc)
                continue
            if not known:
                log.warning("Consul no longer knows %s; registering it again", self._local.instance_id)
                return
            if self._outage:
                log.info("Consul reachable again; check of %s renewed", self._local.instance_id)
                self._outage = False

    async def _wait_or_change(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._changed.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _report_failure(self, what: str, exc: ConsulUnavailable) -> None:
        if not self._outage:
            log.warning(
                "could not %s %s in Consul (%s); retrying every %.1f s",
                what,
                self._local.instance_id,
                exc,
                self.renew_interval_s,
            )
        self._outage = True
