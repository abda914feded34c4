"""Pick a live instance for the call: right capability, version in the caller's range,
schema hash the caller pinned, then the less loaded of two random choices (P2C).

Load is this sidecar's count of its own calls in flight to each instance: cheap, local,
and good enough to steer away from a slow instance, as in Linkerd's and Envoy's P2C.

Instances whose circuit breaker is open are skipped while another one is available; when all
are open, routing picks anyway so the breaker stage says so (CircuitOpen).
"""

from __future__ import annotations

import random
from collections import Counter, OrderedDict
from dataclasses import replace

import semantic_version

from meshwarden.errors import BadPayload, MeshError, NoHealthyInstance, SchemaDrift, UnknownCapability
from sidecar.call import Call, Handler, Layer, Reply
from sidecar.catalog import Catalog, Endpoint
from sidecar.stages.breaker import BreakerBoard

_MAX_CACHED_RANGES = 256


class Routing:
    def __init__(
        self, next: Handler, catalog: Catalog, rng: random.Random, breakers: BreakerBoard | None = None
    ) -> None:
        self._next, self._catalog, self._rng, self._breakers = next, catalog, rng, breakers
        self._inflight: Counter[str] = Counter()
        self._ranges: OrderedDict[str, semantic_version.NpmSpec] = OrderedDict()

    async def __call__(self, call: Call) -> Reply:
        endpoint = self.choose(call)
        self._inflight[endpoint.instance_id] += 1
        try:
            return await self._next(replace(call, target=endpoint))
        except MeshError as err:
            err.failed_instance = err.failed_instance or endpoint.instance_id
            raise
        finally:
            self._inflight[endpoint.instance_id] -= 1
            if self._inflight[endpoint.instance_id] <= 0:
                del self._inflight[endpoint.instance_id]

    def choose(self, call: Call) -> Endpoint:
        candidates = self._catalog.endpoints(call.capability)
        if not candidates:
            if not self._catalog.synced:
                raise NoHealthyInstance(
                    call.capability,
                    call.version_range,
                    "this sidecar has not received the catalog from the registry yet",
                )
            if self._catalog.has_seen(call.capability):
                raise NoHealthyInstance(call.capability, call.version_range, "its last instance left the catalog")
            raise UnknownCapability(call.capability)
        if call.version_range:
            spec = self._range(call.version_range)
            in_range = tuple(ep for ep in candidates if spec.match(ep.version))
            if not in_range:
                live = ", ".join(sorted({str(ep.version) for ep in candidates}))
                raise NoHealthyInstance(call.capability, call.version_range, f"live versions are {live}")
            candidates = in_range
        if call.schema_hash:
            pinned = tuple(ep for ep in candidates if ep.capability.schema_hash == call.schema_hash)
            if not pinned:
                raise SchemaDrift(call.capability, call.schema_hash, [ep.capability.schema_hash for ep in candidates])
            candidates = pinned
        if call.avoid_instances:  # a retry: another instance than the one that failed, if any
            others = tuple(ep for ep in candidates if ep.instance_id not in call.avoid_instances)
            candidates = others or candidates
        if self._breakers is not None and len(candidates) > 1:
            allowed = tuple(ep for ep in candidates if self._breakers.allows(ep.instance_id))
            candidates = allowed or candidates
        if len(candidates) == 1:
            return candidates[0]
        first, second = self._rng.sample(candidates, 2)
        return first if self._inflight[first.instance_id] <= self._inflight[second.instance_id] else second

    def _range(self, text: str) -> semantic_version.NpmSpec:
        spec = self._ranges.get(text)
        if spec is None:
            try:
                spec = semantic_version.NpmSpec(text)
            except ValueError as exc:
                raise BadPayload(
                    f"version range {text!r} is not a valid range; use npm syntax such as ^2.3, ~1.4.0, "
                    f"'>=1.0.0 <2.0.0' or 2.x ({exc})"
                ) from exc
            self._ranges[text] = spec
            if len(self._ranges) > _MAX_CACHED_RANGES:
                self._ranges.popitem(last=False)
        return spec


def layer(catalog: Catalog, rng: random.Random, breakers: BreakerBoard | None = None) -> Layer:
    return lambda next: Routing(next, catalog, rng, breakers)
