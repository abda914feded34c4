"""What runs in the mesh: registration, lease renewal, removal, and queries over the catalog.

Every change to the catalog (an instance added, replaced or removed) gets the next revision,
is committed with its event to the store, and only then is published to watchers, so a
watcher never sees a change that a restart would forget.

Lease renewals are deliberately *not* catalog changes: they bump no revision and publish
nothing. With hundreds of sidecars renewing every couple of seconds, renewals as events would
flood every watcher and push the changes that matter out of the event log's retention. So
`lease_expires_at` in an upserted event is the lease at that change; ListInstances reports
the current one. The same holds for `svid_expires_at`: a renewal records the expiry of the
SVID the sidecar presented, without an event.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from meshwarden.clock import Clock
from meshwarden.registry.errors import InvalidInput, UnknownInstance
from meshwarden.registry.model import (
    DEREGISTERED,
    LEASE_EXPIRED,
    CatalogEvent,
    Instance,
    InstanceSpec,
    RemovalReason,
    Removed,
    Snapshot,
    Upserted,
)
from meshwarden.registry.store import Store
from meshwarden.registry.validation import validate_agent_name, validate_capability_name, validate_spec

log = logging.getLogger(__name__)

INSTANCE_ID_HEX_CHARS: Final = 12

Publish = Callable[[CatalogEvent], None]


@dataclass(frozen=True, kw_only=True, slots=True)
class Registration:
    instance: Instance
    revision: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Listing:
    instances: tuple[Instance, ...]
    revision: int


class Catalog:
    """The catalog's rules over a Store; `publish` receives each committed event (the WatchHub)."""

    def __init__(self, store: Store, clock: Clock, *, lease_ttl_s: float, publish: Publish) -> None:
        self._store, self._clock, self._ttl_s, self._publish = store, clock, lease_ttl_s, publish

    @property
    def revision(self) -> int:
        return self._store.revision

    @property
    def lease_ttl_s(self) -> float:
        return self._ttl_s

    def register(self, spec: InstanceSpec) -> Registration:
        """Adds the instance, or replaces it when `spec.instance_id` is already registered
        (a sidecar re-registering after NOT_FOUND keeps its id; registered_at is kept)."""
        validate_spec(spec)
        now = self._clock.wall()
        existing = self._store.instance(spec.instance_id) if spec.instance_id else None
        instance = Instance(
            instance_id=spec.instance_id or self._new_instance_id(),
            agent=spec.agent,
            version=spec.version,
            peer_address=spec.peer_address,
            capabilities=spec.capabilities,
            spiffe_id=spec.spiffe_id,
            registered_at=existing.registered_at if existing else now,
            lease_expires_at=now + self._ttl_s,
            svid_expires_at=spec.svid_expires_at,
        )
        event = Upserted(revision=self._store.revision + 1, instance=instance)
        self._commit(event)
        log.info(
            "%s %s %s as %s (peer %s, %d capabilities) at revision %d",
            "re-registered" if existing else "registered",
            instance.agent,
            instance.version,
            instance.instance_id,
            instance.peer_address,
            len(instance.capabilities),
            event.revision,
        )
        return Registration(instance=instance, revision=event.revision)

    def instance(self, instance_id: str) -> Instance | None:
        """The registered instance with this id, or None."""
        return self._store.instance(instance_id) if instance_id else None

    def renew(self, instance_id: str, *, svid_expires_at: float | None = None) -> float:
        """Extends the lease by the TTL and returns its new expiry; records the expiry of the
        SVID the sidecar presented, when given.

        Raises UnknownInstance when the instance is not registered or its lease already
        expired (then it is removed now rather than at the reaper's next pass: the sidecar
        registers again, and watchers see one removal and one addition)."""
        _require_id(instance_id)
        instance = self._store.instance(instance_id)
        now = self._clock.wall()
        if instance is None:
            raise UnknownInstance(instance_id)
        if instance.lease_expires_at <= now:
            self._remove(instance_id, LEASE_EXPIRED)
            raise UnknownInstance(instance_id)
        expires_at = now + self._ttl_s
        if not self._store.set_lease(instance_id, expires_at, svid_expires_at):
            raise UnknownInstance(instance_id)
        log.debug("renewed %s until %.3f", instance_id, expires_at)
        return expires_at

    def deregister(self, instance_id: str) -> int:
        """Removes the instance; returns the catalog revision afterwards.

        Idempotent: an unknown id (already expired, or deregistered twice) changes nothing,
        because a sidecar shutting down cleanly should not fail over a lease it already lost."""
        _require_id(instance_id)
        if self._store.instance(instance_id) is None:
            log.info("deregister of unknown instance %s: nothing to do", instance_id)
            return self._store.revision
        return self._remove(instance_id, DEREGISTERED)

    def expire_leases(self) -> list[str]:
        """Removes every instance whose lease has expired; returns their ids."""
        expired = self._store.expired_ids(self._clock.wall())
        for instance_id in expired:
            self._remove(instance_id, LEASE_EXPIRED)
        return expired

    def extend_all_leases(self) -> int:
        """Gives every stored lease a full TTL from now; returns how many were extended."""
        return self._store.extend_all_leases(self._clock.wall() + self._ttl_s)

    def seconds_until_next_expiry(self) -> float | None:
        earliest = self._store.earliest_lease_expiry()
        return None if earliest is None else max(0.0, earliest - self._clock.wall())

    def list_instances(self, *, agent: str = "", capability: str = "") -> Listing:
        """Instances matching both filters (an empty filter matches all), by agent then id."""
        if agent:
            validate_agent_name(agent, "agent")
        if capability:
            validate_capability_name(capability, "capability")
        instances = tuple(
            i
            for i in self._store.instances()
            if (not agent or i.agent == agent) and (not capability or i.serves(capability))
        )
        return Listing(instances=instances, revision=self._store.revision)

    def snapshot(self) -> Snapshot:
        return Snapshot(revision=self._store.revision, instances=tuple(self._store.instances()))

    def events_after(self, revision: int) -> list[CatalogEvent] | None:
        """Every change after `revision`, or None when the log cannot supply them all."""
        return self._store.events_after(revision)

    def _remove(self, instance_id: str, reason: RemovalReason) -> int:
        event = Removed(revision=self._store.revision + 1, instance_id=instance_id, reason=reason)
        self._commit(event)
        log.info("removed %s (%s) at revision %d", instance_id, reason, event.revision)
        return event.revision

    def _commit(self, event: CatalogEvent) -> None:
        self._store.commit(event)
        self._publish(event)

    def _new_instance_id(self) -> str:
        while True:
            candidate = uuid.uuid4().hex[:INSTANCE_ID_HEX_CHARS]
            if self._store.instance(candidate) is None:
                return candidate


def _require_id(instance_id: str) -> None:
    if not instance_id:
        raise InvalidInput("instance_id", "is required: the id Register returned")
