"""Pick a live instance for the call: right capability, version in the caller's range,
schema hash the caller pinned, then the less loaded of two random choices (P2C).

Load is this sidecar's count of its own calls in flight to each instance, as in Linkerd's and
Envoy's P2C, and latency when it differs markedly: when one of the two measured instances'
peak-EWMA latency (the LatencyBoard, fed here with each attempt's latency) is more than
`LATENCY_MARGIN` times the other's, the cheaper by Linkerd's cost, latency times (calls in
flight + 1), wins. A slow instance therefore gets less traffic, while comparable instances
share calls as before instead of the marginally faster one taking them all at low load.

Instances whose circuit breaker is open are skipped while another one is available; when all
are open, routing picks anyway so the breaker stage says so (CircuitOpen).

Weighted routes (`meshwarden route set`) choose the version first: among the versions in range
that have a usable instance (not failed in this call, circuit not open), by weight; versions
with weight 0 or not listed are chosen only when no weighted one is usable. A call with a
session_id keeps the version its session first resolved to while that version has a usable
instance in range; otherwise the session moves to another version (by weight) and says so.
When no version has an instance whose circuit is not open, a session's call fails with
NoHealthyInstance naming the session and its version rather than the breaker's CircuitOpen.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, OrderedDict
from dataclasses import replace

import semantic_version

from meshwarden.errors import (
    BadPayload,
    DeadlineExceeded,
    NoHealthyInstance,
    SchemaDrift,
    UnknownCapability,
)
from meshwarden.sidecar.call import Call, Handler, Layer, Reply
from meshwarden.sidecar.catalog import Catalog, Endpoint
from meshwarden.sidecar.latency import LatencyBoard
from meshwarden.sidecar.routes import RouteTable, SessionPins
from meshwarden.sidecar.stages.breaker import BreakerBoard

log = logging.getLogger(__name__)

_MAX_CACHED_RANGES = 256
LATENCY_MARGIN = 2.0


class Routing:
    def __init__(
        self,
        next: Handler,
        catalog: Catalog,
        rng: random.Random,
        breakers: BreakerBoard | None = None,
        routes: RouteTable | None = None,
        sessions: SessionPins | None = None,
        latency: LatencyBoard | None = None,
    ) -> None:
        self._next, self._catalog, self._rng, self._breakers = next, catalog, rng, breakers
        self._routes, self._sessions, self._latency = routes, sessions, latency
        self._inflight: Counter[str] = Counter()
        self._ranges: OrderedDict[str, semantic_version.NpmSpec] = OrderedDict()

    async def __call__(self, call: Call) -> Reply:
        endpoint = self.choose(call)
        call.record.target, call.record.attempt = endpoint, call.attempt
        instance_id, latency = endpoint.instance_id, self._latency
        self._inflight[instance_id] += 1
        started = latency.now() if latency is not None else 0.0
        try:
            reply = await self._next(replace(call, target=endpoint))
        except DeadlineExceeded:
            if latency is not None:  # slow, not broken: it counts
                now = latency.now()
                latency.observe(call.capability, instance_id, now - started, now)
            raise
        finally:
            self._inflight[instance_id] -= 1
            if self._inflight[instance_id] <= 0:
                del self._inflight[instance_id]
        if latency is not None:
            now = latency.now()
            latency.observe(call.capability, instance_id, now - started, now)
        return reply

    def choose(self, call: Call) -> Endpoint:
        candidates = self._catalog.endpoints(call.capability)
        if not candidates:
            if not self._catalog.synced:
                raise NoHealthyInstance(
                    call.capability,
                    call.version_range,
                    "this sidecar has not received the catalog from its discovery (registry or Consul) yet",
                )
            isolated = self._catalog.isolated_versions(call.capability)
            if isolated:
                raise NoHealthyInstance(
                    call.capability,
                    call.version_range,
                    f"an operator isolated {', '.join(isolated)} (meshwarden isolate list)",
                )
            if self._catalog.has_seen(call.capability):
                raise NoHealthyInstance(call.capability, call.version_range, "its last instance left the catalog")
            raise UnknownCapability(call.capability)
        if call.version_range:
            spec = self._range(call.version_range)
            in_range = tuple(ep for ep in candidates if spec.match(ep.version))
            if not in_range:
                live = ", ".join(sorted({str(ep.version) for ep in candidates}))
                isolated = self._catalog.isolated_versions(call.capability)
                also = f" ({', '.join(isolated)} isolated by an operator)" if isolated else ""
                raise NoHealthyInstance(
                    call.capability, call.version_range, f"live versions are {live}{also}{self._session_note(call)}"
                )
            candidates = in_range
        if call.schema_hash:
            pinned = tuple(ep for ep in candidates if ep.capability.schema_hash == call.schema_hash)
            if not pinned:
                raise SchemaDrift(call.capability, call.schema_hash, [ep.capability.schema_hash for ep in candidates])
            candidates = pinned
        candidates, pin, moved_from = self._by_version(call, candidates)
        endpoint = self._instance(call, candidates)
        if pin and self._sessions is not None:
            self._sessions.pin(call.session_id, call.capability, endpoint.version)
            if moved_from is not None:
                log.info(
                    "session %s moved %s from version %s to %s",
                    call.session_id,
                    call.capability,
                    moved_from,
                    endpoint.version,
                )
        return endpoint

    def _by_version(
        self, call: Call, candidates: tuple[Endpoint, ...]
    ) -> tuple[tuple[Endpoint, ...], bool, str | None]:
        """The candidates of the version this call goes to; whether to pin the session to the
        chosen instance's version; and the version the session moved away from, if it did."""
        weights = self._routes.weights(call.capability) if self._routes is not None else {}
        session = call.session_id if self._sessions is not None else ""
        if not weights and not session:
            return candidates, False, None
        by_version: dict[semantic_version.Version, list[Endpoint]] = {}
        for ep in candidates:
            by_version.setdefault(ep.version, []).append(ep)
        usable = {v for v, eps in by_version.items() if any(self._usable(ep, call) for ep in eps)}
        eligible = usable or set(by_version)
        moved_from: str | None = None
        if session and self._sessions is not None:
            pinned = self._sessions.get(session, call.capability)
            if pinned is not None and not usable and pinned in by_version and self._all_isolated(candidates):
                raise NoHealthyInstance(
                    call.capability,
                    call.version_range,
                    f"session {session} is on version {pinned}, whose instances are all isolated (circuit open), "
                    f"and no other version{' in range' if call.version_range else ''} has an instance that is not; "
                    "retry after the breaker's reset time, or start a new session",
                )
            if pinned is not None and pinned in eligible:
                return tuple(by_version[pinned]), False, None
            if pinned is not None:
                why = "its instances failed or their circuits are open" if pinned in by_version else "it is gone"
                moved_from = f"{pinned} ({why})"
                candidates = tuple(ep for ep in candidates if ep.version in eligible)
        version = self._weighted(eligible, weights)
        if version is not None:
            candidates = tuple(by_version[version])
        return candidates, bool(session), moved_from

    def _all_isolated(self, candidates: tuple[Endpoint, ...]) -> bool:
        breakers = self._breakers
        return breakers is not None and not any(breakers.allows(ep.instance_id) for ep in candidates)

    def _session_note(self, call: Call) -> str:
        """For errors: the version the call's session was on, if it had one."""
        if not call.session_id or self._sessions is None:
            return ""
        pinned = self._sessions.get(call.session_id, call.capability)
        return f"; session {call.session_id} was on version {pinned}" if pinned is not None else ""

    def _usable(self, ep: Endpoint, call: Call) -> bool:
        if ep.instance_id in call.avoid_instances:
            return False
        return self._breakers is None or self._breakers.allows(ep.instance_id)

    def _weighted(
        self, versions: set[semantic_version.Version], weights: dict[semantic_version.Version, int]
    ) -> semantic_version.Version | None:
        """A version drawn by weight among `versions`; None when none of them has a weight."""
        weighted = [(v, weights[v]) for v in sorted(versions) if weights.get(v, 0) > 0]
        if not weighted:
            return None
        if len(weighted) == 1:
            return weighted[0][0]
        point = self._rng.random() * sum(w for _, w in weighted)
        for version, weight in weighted:
            point -= weight
            if point < 0:
                return version
        return weighted[-1][0]

    def _instance(self, call: Call, candidates: tuple[Endpoint, ...]) -> Endpoint:
        if call.avoid_instances:  # a retry: another instance than the one that failed, if any
            others = tuple(ep for ep in candidates if ep.instance_id not in call.avoid_instances)
            candidates = others or candidates
        if self._breakers is not None and len(candidates) > 1:
            allowed = tuple(ep for ep in candidates if self._breakers.allows(ep.instance_id))
            candidates = allowed or candidates
        if len(candidates) == 1:
            return candidates[0]
        first, second = self._rng.sample(candidates, 2)
        first_load, second_load = self._inflight[first.instance_id], self._inflight[second.instance_id]
        latency = self._latency
        if latency is not None:
            now = latency.now()
            first_s = latency.peak_s(call.capability, first.instance_id, now)
            second_s = latency.peak_s(call.capability, second.instance_id, now)
            if (
                first_s is not None
                and second_s is not None
                and (first_s > LATENCY_MARGIN * second_s or second_s > LATENCY_MARGIN * first_s)
            ):
                return first if first_s * (first_load + 1) <= second_s * (second_load + 1) else second
        return first if first_load <= second_load else second

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


def layer(
    catalog: Catalog,
    rng: random.Random,
    breakers: BreakerBoard | None = None,
    routes: RouteTable | None = None,
    sessions: SessionPins | None = None,
    latency: LatencyBoard | None = None,
) -> Layer:
    return lambda next: Routing(next, catalog, rng, breakers, routes, sessions, latency)
