"""Consul as discovery: this instance registered with the local Consul agent under a TTL check,
and routing following Consul's passing instances of every meshwarden agent.

The sidecar keeps its registry lease as well, so the registry's catalog stays the operator
view (`meshwarden agents list`, bundle status, scoped kill switches) whichever discovery
routes; its watch stream still brings policy bundles and routes, and its catalog events go to
a view of their own that routing never reads.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from meshwarden.clock import Clock
from meshwarden.sidecar.catalog import Catalog
from meshwarden.sidecar.discovery.consul_api import ConsulApi
from meshwarden.sidecar.discovery.consul_registration import ConsulRegistration, Health
from meshwarden.sidecar.discovery.consul_settings import ConsulSettings
from meshwarden.sidecar.discovery.consul_watch import ConsulWatch
from meshwarden.sidecar.discovery.source import Loop
from meshwarden.sidecar.local_agent import LocalAgent


class ConsulDiscovery:
    def __init__(
        self,
        settings: ConsulSettings,
        *,
        routing_catalog: Catalog,
        local: LocalAgent,
        health: Health,
        trust_domain: str,
        check_ttl_s: float,
        deregister_critical_after_s: float,
        wait_s: float,
        rng: random.Random,
        clock: Clock,
    ) -> None:
        self._api = ConsulApi(settings)
        self._registry_view = Catalog()
        self._registration = ConsulRegistration(
            self._api, local, health, ttl_s=check_ttl_s, deregister_critical_after_s=deregister_critical_after_s
        )
        self._watch = ConsulWatch(
            self._api, routing_catalog, trust_domain=trust_domain, wait_s=wait_s, rng=rng, clock=clock
        )

    @property
    def registry_view(self) -> Catalog:
        return self._registry_view

    def loops(self) -> Mapping[str, Loop]:
        return {"consul-registration": self._registration.run, "consul-watch": self._watch.run}

    async def withdraw(self) -> None:
        await self._registration.deregister()

    async def close(self) -> None:
        await self._api.close()
