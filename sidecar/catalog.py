"""This sidecar's view of the mesh catalog, kept current by the registry watch stream.

Routing reads `endpoints(capability)` on every call, so the index by capability is rebuilt
when the catalog changes (rare) rather than computed per call (often). While the registry is
unreachable the view simply stops changing: routing goes on from the last known catalog.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import semantic_version

from meshwarden.v1 import catalog_pb2, registry_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CapabilitySpec:
    name: str
    input_schema_json: str
    output_schema_json: str
    schema_hash: str
    # The deadline its author declared for callers that set none (0: the sidecar's default).
    default_timeout_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One capability as served by one instance: what routing chooses between."""

    instance_id: str
    agent: str
    version: semantic_version.Version
    peer_address: str
    spiffe_id: str
    capability: CapabilitySpec


class Catalog:
    def __init__(self) -> None:
        self._instances: dict[str, catalog_pb2.Instance] = {}
        self._by_capability: dict[str, tuple[Endpoint, ...]] = {}
        self._default_timeouts: dict[str, float] = {}
        # Capabilities served at some point since this sidecar started: a call to one that has
        # no live instance right now is "unavailable", not "unknown".
        self._seen: set[str] = set()
        self.revision = 0
        self.synced = False  # True once a first snapshot or replay arrived
        # (agent, version) pairs an operator isolated (`meshwarden isolate`): out of routing,
        # as if absent, and the versions so hidden per capability, for routing's message.
        self._isolated: frozenset[tuple[str, str]] = frozenset()
        self._hidden: dict[str, tuple[str, ...]] = {}
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        """`listener` runs after every change of the view (e.g. to close channels to instances
        that left)."""
        self._listeners.append(listener)

    def peer_endpoints(self) -> frozenset[tuple[str, str]]:
        """(peer address, SPIFFE ID) of every instance in the view, isolated ones included."""
        return frozenset((i.peer_address, i.spiffe_id) for i in self._instances.values())

    def apply(self, event: registry_pb2.WatchEvent) -> None:
        """Applies one watch event: a snapshot, one change, or a batch of changes (re-indexed
        once for the whole batch: with 10,000 instances a re-index is milliseconds)."""
        if event.WhichOneof("change") == "changes":
            for change in event.changes.events:
                self._apply_one(change)
        else:
            self._apply_one(event)
        self.revision = max(self.revision, event.revision)
        self.synced = True
        self._reindex()

    def _apply_one(self, event: registry_pb2.WatchEvent) -> None:
        change = event.WhichOneof("change")
        if change == "snapshot":
            self._instances = {i.instance_id: i for i in event.snapshot.instances}
        elif change == "upserted":
            self._instances[event.upserted.instance_id] = event.upserted
        elif change == "removed":
            self._instances.pop(event.removed.instance_id, None)
        else:
            log.warning("ignoring a watch event of unknown kind %r at revision %d", change, event.revision)

    def replace(self, instances: Iterable[catalog_pb2.Instance], *, complete: bool = True) -> None:
        """The whole view at once, from a discovery that keeps no revisions (Consul); `complete`
        once every part of it has been heard from (until then a missing capability is "not
        received yet", not "unknown")."""
        self._instances = {i.instance_id: i for i in instances}
        self.synced = self.synced or complete
        self._reindex()

    def isolate(self, versions: frozenset[tuple[str, str]]) -> None:
        """Takes these (agent, version) pairs out of routing (and puts back those not listed)."""
        if versions != self._isolated:
            self._isolated = versions
            self._reindex()

    def isolated_versions(self, capability: str) -> tuple[str, ...]:
        """'agent@version' of the isolated versions that serve `capability`."""
        return self._hidden.get(capability, ())

    def endpoints(self, capability: str) -> tuple[Endpoint, ...]:
        return self._by_capability.get(capability, ())

    def default_timeout_s(self, capability: str) -> float:
        """The longest default timeout a live instance declares for the capability (0: none),
        so that no version is cut short by a shorter default another version declared."""
        return self._default_timeouts.get(capability, 0.0)

    def has_seen(self, capability: str) -> bool:
        return capability in self._seen

    def seen(self) -> frozenset[str]:
        """Every capability served at some point since this sidecar started."""
        return frozenset(self._seen)

    def instances(self) -> list[catalog_pb2.Instance]:
        return sorted(self._instances.values(), key=lambda i: (i.agent, i.version, i.instance_id))

    def _reindex(self) -> None:
        index: dict[str, list[Endpoint]] = {}
        hidden: dict[str, set[str]] = {}
        for inst in self._instances.values():
            try:
                version = semantic_version.Version(inst.version)
            except ValueError:
                log.warning("instance %s has an invalid version %r; not routable", inst.instance_id, inst.version)
                continue
            if self._isolated and (inst.agent, str(version)) in self._isolated:
                for cap in inst.capabilities:
                    hidden.setdefault(cap.name, set()).add(f"{inst.agent}@{version}")
                continue
            for cap in inst.capabilities:
                spec = CapabilitySpec(
                    cap.name,
                    cap.input_schema_json,
                    cap.output_schema_json,
                    cap.schema_hash,
                    cap.default_timeout_ms / 1000.0,
                )
                index.setdefault(cap.name, []).append(
                    Endpoint(inst.instance_id, inst.agent, version, inst.peer_address, inst.spiffe_id, spec)
                )
        self._by_capability = {name: tuple(eps) for name, eps in index.items()}
        self._default_timeouts = {
            name: max(ep.capability.default_timeout_s for ep in eps)
            for name, eps in index.items()
            if any(ep.capability.default_timeout_s for ep in eps)
        }
        self._hidden = {name: tuple(sorted(found)) for name, found in hidden.items()}
        self._seen.update(hidden)
        self._seen.update(self._by_capability)
        for listener in self._listeners:
            listener()
