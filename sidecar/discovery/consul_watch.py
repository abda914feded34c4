"""Keep the routing catalog equal to what Consul says is passing, for every meshwarden agent.

One blocking query on /v1/catalog/services learns which services carry the `meshwarden` tag;
one blocking query per such service on /v1/health/service/<name>?passing follows its healthy
instances. Each answer replaces that service's part of the view, and the whole view replaces
the catalog routing reads, so an instance whose TTL check went critical (its sidecar crashed)
leaves routing with the next answer. Schemas are read once per hash from Consul's KV store.

While Consul is unreachable nothing is replaced: routing goes on from the last known view,
and every loop retries with jittered exponential backoff. Index handling and rate limiting
follow Consul's blocking-query rules (sidecar/discovery/consul_blocking.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Iterable

from meshwarden.clock import Clock
from meshwarden.sidecar.catalog import Catalog
from meshwarden.sidecar.discovery.consul_api import ConsulApi, ConsulUnavailable, ServiceEntry
from meshwarden.sidecar.discovery.consul_blocking import Backoff, RateLimit, next_index
from meshwarden.sidecar.discovery.consul_service import (
    MESH_TAG,
    InvalidEntry,
    MissingSchema,
    SchemaPair,
    decode_capabilities,
    instance_from_entry,
    read_schema_document,
    schema_key,
)
from meshwarden.tasks import cancel_all, supervise
from meshwarden.v1 import catalog_pb2

log = logging.getLogger(__name__)


class ConsulWatch:
    def __init__(
        self,
        api: ConsulApi,
        catalog: Catalog,
        *,
        trust_domain: str,
        wait_s: float,
        rng: random.Random,
        clock: Clock,
    ) -> None:
        self._api, self._catalog = api, catalog
        self._trust_domain, self._wait_s = trust_domain, wait_s
        self._rng, self._clock = rng, clock
        self._views: dict[str, list[catalog_pb2.Instance]] = {}
        self._followers: dict[str, asyncio.Task[None]] = {}
        # Content-addressed, so an entry never goes stale; bounded by the contracts in the mesh.
        self._schemas: dict[str, SchemaPair] = {}
        self._reported: set[str] = set()  # problems already logged, so each is logged once
        self._answered: set[str] = set()  # services whose health query answered at least once

    async def run(self) -> None:
        try:
            await self._follow_services()
        finally:
            await cancel_all(list(self._followers.values()))
            self._followers.clear()

    async def _follow_services(self) -> None:
        index, backoff, limit = 0, Backoff(self._rng), RateLimit(self._clock)
        outage = False
        while True:
            await asyncio.sleep(limit.delay_s())
            try:
                answer = await self._api.services(index, self._wait_s)
            except ConsulUnavailable as exc:
                if not outage:
                    log.warning(
                        "Consul unreachable (%s); routing from the last known view (%d instances)",
                        exc,
                        sum(len(v) for v in self._views.values()),
                    )
                    outage = True
                await asyncio.sleep(backoff.next_delay_s())
                continue
            if outage:
                log.info("Consul reachable again at %s; following its catalog", self._api.base_url)
                outage = False
            backoff.reset()
            self._follow({name for name, tags in answer.value.items() if MESH_TAG in tags})
            if not self._followers:
                self._publish()  # an empty mesh is a complete view too
            index = next_index(index, answer.index)

    def _follow(self, names: set[str]) -> None:
        for name in sorted(names - self._followers.keys()):
            self._followers[name] = supervise(f"consul-watch-{name}", functools.partial(self._follow_service, name))
        gone = sorted(self._followers.keys() - names)
        for name in gone:
            self._followers.pop(name).cancel()
            self._views.pop(name, None)
            self._answered.discard(name)
        if gone:
            log.info("agents %s are no longer registered in Consul", ", ".join(gone))
            self._publish()

    async def _follow_service(self, name: str) -> None:
        index, backoff, limit = 0, Backoff(self._rng), RateLimit(self._clock)
        while True:
            await asyncio.sleep(limit.delay_s())
            try:
                answer = await self._api.healthy_instances(name, index, self._wait_s)
                complete = await self._update(name, answer.value)
            except ConsulUnavailable as exc:
                log.debug("health query for %s failed: %s", name, exc)
                await asyncio.sleep(backoff.next_delay_s())
                continue
            if complete:
                backoff.reset()
                index = next_index(index, answer.index)
            else:  # a schema document is missing: read again soon instead of blocking on an unchanged index
                index = 0
                await asyncio.sleep(backoff.next_delay_s())

    async def _update(self, name: str, entries: list[ServiceEntry]) -> bool:
        """Replaces `name`'s part of the view; False when an instance waits for a schema document."""
        await self._read_schemas(entries)
        instances: list[catalog_pb2.Instance] = []
        complete = True
        for entry in entries:
            if entry.name != name:
                continue
            try:
                instances.append(instance_from_entry(entry, self._trust_domain, self._schemas))
            except MissingSchema as exc:
                complete = False
                self._report(str(exc))
            except InvalidEntry as exc:
                self._report(f"ignoring a Consul entry: {exc}")
        first = name not in self._answered
        self._answered.add(name)
        if first or [i.SerializeToString(deterministic=True) for i in instances] != [
            i.SerializeToString(deterministic=True) for i in self._views.get(name, [])
        ]:
            self._views[name] = instances
            self._publish()
        return complete

    async def _read_schemas(self, entries: Iterable[ServiceEntry]) -> None:
        wanted: set[str] = set()
        for entry in entries:
            try:
                wanted.update(digest for _, digest in decode_capabilities(entry.meta))
            except InvalidEntry:
                continue  # reported by instance_from_entry
        for digest in sorted(wanted - self._schemas.keys()):
            raw = await self._api.kv_get(schema_key(digest))
            if raw is None:
                continue
            try:
                self._schemas[digest] = read_schema_document(digest, raw)
            except InvalidEntry as exc:
                self._report(str(exc))

    def _publish(self) -> None:
        instances = sorted((i for view in self._views.values() for i in view), key=lambda i: (i.agent, i.instance_id))
        self._catalog.replace(instances, complete=self._followers.keys() <= self._answered)

    def _report(self, problem: str) -> None:
        if problem not in self._reported:
            self._reported.add(problem)
            log.warning("%s", problem)
