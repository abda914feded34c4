"""What runs in the mesh: registration, lease renewal, removal, and queries over the catalog.

Every change to the catalog (an instance added, replaced or removed) gets its revision from
the store, in the transaction that commits it with its event, and only then is published to
watchers, so a watcher never sees a change that a restart would forget. Changes are made one
at a time (a lock over the write and its publication), so watchers receive them in revision
order, and a change whose caller went away is still published (the write is shielded).

Lease renewals are deliberately *not* catalog changes: they bump no revision and publish
nothing. With hundreds of sidecars renewing every couple of seconds, renewals as events would
flood every watcher and push the changes that matter out of the event log's retention. So
`lease_expires_at` in an upserted event is the lease at that change; ListInstances reports
the current one. The same holds for `svid_expires_at`: a renewal records the expiry of the
SVID the sidecar presented, without an event.

With several replicas on one store, another replica's changes reach this one's watchers
through `catch_up` (called by registry.replicas when the store's revision moved): it publishes
every event after the last one published here, from the store's log. A change committed here
whose revision is not the next one (another replica committed in between) publishes the
events in between first, so the watchers of every replica see every change in revision order.

Registrations under a fresh id are the common change and, under load, many arrive at once:
they are queued and added a batch at a time (`store.add_all`, one transaction and one commit
for all that arrived while the previous batch was written), still one batch at a time under
the same lock, so a burst shares commits instead of queuing for one each (PostgreSQL's commit,
a few milliseconds, was what capped registrations per second).

Which agent may touch an instance is decided here too (registry.authz.require_agent), since
only the catalog knows whose instance an id is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from meshwarden import tasks
from meshwarden.clock import Clock
from meshwarden.registry.authz import Caller, require_agent
from meshwarden.registry.errors import InvalidInput, UnknownInstance
from meshwarden.registry.model import (
    DEREGISTERED,
    LEASE_EXPIRED,
    NOT_RECORDED,
    CatalogEvent,
    Instance,
    InstanceSpec,
    RemovalReason,
    Removed,
    Snapshot,
    Upserted,
)
from meshwarden.registry.store import CatalogStore, LeaseStore
from meshwarden.registry.validation import validate_agent_name, validate_capability_name, validate_spec

log = logging.getLogger(__name__)

INSTANCE_ID_HEX_CHARS: Final = 12
# Registrations added in one store transaction at most (registry.catalog.Catalog._add).
MAX_ADD_BATCH: Final = 256

Publish = Callable[[CatalogEvent], None]
Resync = Callable[[str], None]


@dataclass(frozen=True, kw_only=True, slots=True)
class Registration:
    instance: Instance
    revision: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Listing:
    instances: tuple[Instance, ...]
    revision: int
    registered: frozenset[str] = frozenset()  # every instance id in the catalog, filtered or not


class Catalog:
    """The catalog's rules over its stores; `publish` receives each committed event (the WatchHub).

    Call `await load()` once before use: it reads the revision and which agent runs each
    instance (kept in memory for the metrics, which are read without awaiting)."""

    def __init__(
        self,
        store: CatalogStore,
        leases: LeaseStore,
        clock: Clock,
        *,
        lease_ttl_s: float,
        publish: Publish,
        resync: Resync = lambda _: None,
    ) -> None:
        self._store, self._leases, self._clock = store, leases, clock
        self._ttl_s, self._publish, self._resync = lease_ttl_s, publish, resync
        self._changing = asyncio.Lock()
        self._revision = 0
        self._agents: dict[str, str] = {}  # instance id -> agent, as of `_revision`
        self._adding: list[tuple[Instance, asyncio.Future[Upserted | None]]] = []
        self._adder: asyncio.Task[None] | None = None

    async def load(self) -> None:
        snapshot = await self._store.snapshot()
        self._revision = snapshot.revision
        self._agents = {i.instance_id: i.agent for i in snapshot.instances}

    @property
    def revision(self) -> int:
        """The revision of the last change this catalog committed or loaded."""
        return self._revision

    @property
    def instances_by_agent(self) -> Counter[str]:
        return Counter(self._agents.values())

    @property
    def lease_ttl_s(self) -> float:
        return self._ttl_s

    async def register(self, spec: InstanceSpec, caller: Caller | None = None) -> Registration:
        """Adds the instance, or replaces it when `spec.instance_id` is already registered
        (a sidecar re-registering after NOT_FOUND keeps its id; registered_at is kept).

        With a `caller` (the server's case), the instance is the caller's agent's: its SPIFFE
        ID, SVID expiry and enrolment (who let it in) are the caller's certificate's, and an instance id registered by
        another agent is refused."""
        validate_agent_name(spec.agent, "instance.agent")
        if caller is not None:
            identity = require_agent(caller, spec.agent, "register instances")
            spec = dataclasses.replace(
                spec,
                spiffe_id=identity.spiffe_id,
                svid_expires_at=caller.svid_expires_at,
                enrolment=caller.enrolment or NOT_RECORDED,
            )
        validate_spec(spec)
        replaced: list[Instance] = []

        def new_instance(instance_id: str, existing: Instance | None) -> Instance:
            now = self._clock.wall()
            return Instance(
                instance_id=instance_id,
                agent=spec.agent,
                version=spec.version,
                peer_address=spec.peer_address,
                capabilities=spec.capabilities,
                spiffe_id=spec.spiffe_id,
                registered_at=existing.registered_at if existing else now,
                lease_expires_at=now + self._ttl_s,
                svid_expires_at=spec.svid_expires_at,
                enrolment=spec.enrolment,
            )

        async def replace_or_add() -> Upserted:
            # Read and written under the change lock: no other change of this catalog falls
            # between the ownership check and the write.
            existing = await self._store.instance(spec.instance_id)
            if existing is not None:
                if caller is not None:
                    require_agent(caller, existing.agent, f"replace instance {existing.instance_id}")
                replaced.append(existing)
            return await self._store.upsert(new_instance(spec.instance_id, existing))

        event: Upserted | Removed | None = None
        if spec.instance_id:
            event = await self._change(replace_or_add)
        while event is None:  # a fresh id: added only if no instance holds it, else another is drawn
            event = await self._add(new_instance(_new_id(), None))
        if not isinstance(event, Upserted):  # an upsert always changes the catalog
            raise RuntimeError(f"registering {spec.instance_id or 'an instance'} committed no upsert")
        instance = event.instance
        log.info(
            "%s %s %s as %s (peer %s, %d capabilities) at revision %d",
            "re-registered" if replaced else "registered",
            instance.agent,
            instance.version,
            instance.instance_id,
            instance.peer_address,
            len(instance.capabilities),
            event.revision,
        )
        return Registration(instance=instance, revision=event.revision)

    async def instance(self, instance_id: str) -> Instance | None:
        """The registered instance with this id, or None."""
        return await self._store.instance(instance_id) if instance_id else None

    async def is_registered(self, instance_id: str) -> bool:
        return await self.instance(instance_id) is not None

    async def renew(self, instance_id: str, caller: Caller | None = None) -> float:
        """Extends the lease by the TTL and returns its new expiry; with a `caller`, only its
        own agent's instance, recording the expiry of the SVID it presented.

        Raises UnknownInstance when the instance is not registered or its lease already
        expired (then it is removed now rather than at the reaper's next pass: the sidecar
        registers again, and watchers see one removal and one addition). One conditional
        write when all is well; the reason for a refusal is looked up only then."""
        _require_id(instance_id)
        now = self._clock.wall()
        expires_at = now + self._ttl_s
        if caller is None:
            agent, svid_expires_at = None, None
        else:  # "" matches no instance: a caller without an agent's SVID is refused below
            agent = caller.identity.name if caller.identity is not None else ""
            svid_expires_at = caller.svid_expires_at
        if await self._leases.set_lease(instance_id, expires_at, svid_expires_at, agent=agent, live_at=now):
            log.debug("renewed %s until %.3f", instance_id, expires_at)
            return expires_at
        instance = await self._store.instance(instance_id)
        if instance is None:
            raise UnknownInstance(instance_id)
        if caller is not None:
            require_agent(caller, instance.agent, f"renew the lease of instance {instance_id}")
        if instance.lease_expires_at <= now:
            await self._remove(instance_id, LEASE_EXPIRED)
        raise UnknownInstance(instance_id)

    async def deregister(self, instance_id: str, caller: Caller | None = None) -> int:
        """Removes the instance (with a `caller`: only its own agent's); returns the catalog
        revision afterwards.

        Idempotent: an unknown id (already expired, or deregistered twice) changes nothing,
        because a sidecar shutting down cleanly should not fail over a lease it already lost."""
        _require_id(instance_id)
        instance = await self._store.instance(instance_id)
        if instance is None:
            log.info("deregister of unknown instance %s: nothing to do", instance_id)
            return self._revision
        if caller is not None:
            require_agent(caller, instance.agent, f"deregister of instance {instance_id}")
        removed = await self._remove(instance_id, DEREGISTERED)
        return removed if removed is not None else self._revision

    async def expire_leases(self) -> list[str]:
        """Removes every instance whose lease has expired; returns their ids."""
        expired = await self._leases.expired(self._clock.wall())
        for instance_id in expired:
            await self._remove(instance_id, LEASE_EXPIRED)
        return expired

    async def extend_all_leases(self, *, grace_s: float = 0.0) -> int:
        """Gives every stored lease a full TTL (plus `grace_s`) from now; returns how many were
        extended."""
        return await self._leases.extend_all(self._clock.wall() + self._ttl_s + grace_s)

    async def seconds_until_next_expiry(self) -> float | None:
        earliest = await self._leases.earliest_expiry()
        return None if earliest is None else max(0.0, earliest - self._clock.wall())

    async def list_instances(self, *, agent: str = "", capability: str = "") -> Listing:
        """Instances matching both filters (an empty filter matches all), by agent then id."""
        if agent:
            validate_agent_name(agent, "agent")
        if capability:
            validate_capability_name(capability, "capability")
        snapshot = await self._store.snapshot()
        instances = tuple(
            i
            for i in snapshot.instances
            if (not agent or i.agent == agent) and (not capability or i.serves(capability))
        )
        registered = frozenset(i.instance_id for i in snapshot.instances)
        return Listing(instances=instances, revision=snapshot.revision, registered=registered)

    async def snapshot(self) -> Snapshot:
        return await self._store.snapshot()

    async def events_after(self, revision: int) -> list[CatalogEvent] | None:
        """Every change after `revision`, or None when the log cannot supply them all."""
        return await self._store.events_after(revision)

    async def _remove(self, instance_id: str, reason: RemovalReason) -> int | None:
        event = await self._change(lambda: self._store.remove(instance_id, reason))
        if event is None:
            return None  # removed meanwhile by someone else (the reaper, a deregistration)
        log.info("removed %s (%s) at revision %d", instance_id, reason, event.revision)
        return event.revision

    async def _change(self, write: Callable[[], Awaitable[Upserted | Removed | None]]) -> Upserted | Removed | None:
        """Commits one change and publishes its event, one change at a time; shielded, so a
        committed change is published even when the caller is cancelled."""

        async def commit_and_publish() -> Upserted | Removed | None:
            async with self._changing:
                event = await write()
                if event is not None:
                    await self._publish_through(event)
                return event

        return await tasks.to_completion(commit_and_publish())

    async def _add(self, instance: Instance) -> Upserted | None:
        """Adds `instance` with the next batch (None when its id was taken); shielded like
        `_change`: a caller that goes away does not take the batch with it."""
        added: asyncio.Future[Upserted | None] = asyncio.get_running_loop().create_future()
        self._adding.append((instance, added))
        if self._adder is None or self._adder.done():
            self._adder = asyncio.create_task(self._add_queued())
        return await asyncio.shield(added)

    async def _add_queued(self) -> None:
        """Adds what was queued, up to MAX_ADD_BATCH a transaction, until nothing is left."""
        while self._adding:
            batch, self._adding = self._adding[:MAX_ADD_BATCH], self._adding[MAX_ADD_BATCH:]
            try:
                async with self._changing:
                    events = await self._store.add_all([instance for instance, _ in batch])
                    for event in events:
                        if event is not None:
                            await self._publish_through(event)
            except Exception as exc:  # noqa: BLE001 -- whatever failed the batch fails each of its callers
                for _, waiting in batch:
                    if not waiting.done():
                        waiting.set_exception(exc)
                continue
            for (_, waiting), event in zip(batch, events, strict=True):
                if not waiting.done():
                    waiting.set_result(event)

    async def catch_up(self) -> None:
        """Publishes every change other replicas committed since the last one published here."""
        async with self._changing:
            await self._publish_missed()

    async def _publish_through(self, event: CatalogEvent) -> None:
        """Publishes `event`, after the events before it that were not published here yet."""
        if event.revision <= self._revision:
            return  # published already (caught up from the store meanwhile)
        if event.revision == self._revision + 1:
            self._applied(event)
            self._publish(event)
            return
        await self._publish_missed()

    async def _publish_missed(self) -> None:
        missed = await self._store.events_after(self._revision)
        if missed is None:  # the log no longer holds them: watchers start again from a snapshot
            before = self._revision
            await self.load()
            log.warning("catalog moved from revision %d to %d beyond the event log", before, self._revision)
            self._resync(
                f"the catalog moved past revision {before} faster than the event log keeps; "
                "reconnect with since_revision set to the last revision applied"
            )
            return
        for event in missed:
            if event.revision > self._revision:
                self._applied(event)
                self._publish(event)

    def _applied(self, event: CatalogEvent) -> None:
        self._revision = max(self._revision, event.revision)
        if isinstance(event, Upserted):
            self._agents[event.instance.instance_id] = event.instance.agent
        else:
            self._agents.pop(event.instance_id, None)


def _new_id() -> str:
    return uuid.uuid4().hex[:INSTANCE_ID_HEX_CHARS]


def _require_id(instance_id: str) -> None:
    if not instance_id:
        raise InvalidInput("instance_id", "is required: the id Register returned")
