"""Converts between the registry's domain values and meshwarden.v1 protobuf messages.

Pure functions with no decisions in them: registry.server calls them at the gRPC edge, so
the catalog never sees protobuf and the wire never sees a domain object.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from meshwarden.registry.bundles import SidecarBundleStatus, StoredBundle
from meshwarden.registry.health_reports import InstanceHealth
from meshwarden.registry.model import Capability, CatalogEvent, Enrolment, Instance, InstanceSpec, Snapshot, Upserted
from meshwarden.registry.routes import StoredRoute
from meshwarden.v1 import catalog_pb2, registry_pb2


def spec_from_proto(message: catalog_pb2.Instance) -> InstanceSpec:
    return InstanceSpec(
        instance_id=message.instance_id,
        agent=message.agent,
        version=message.version,
        peer_address=message.peer_address,
        capabilities=tuple(
            Capability(
                name=c.name,
                input_schema_json=c.input_schema_json,
                output_schema_json=c.output_schema_json,
                schema_hash=c.schema_hash,
                description=c.description,
                default_timeout_ms=c.default_timeout_ms,
            )
            for c in message.capabilities
        ),
        spiffe_id=message.spiffe_id,  # the server replaces it with the SPIFFE ID of the caller's SVID
    )


def instance_to_proto(instance: Instance, *, with_enrolment: bool = False) -> catalog_pb2.Instance:
    """The instance on the wire; `with_enrolment` for listings (the watch stream leaves it out)."""
    return catalog_pb2.Instance(
        instance_id=instance.instance_id,
        agent=instance.agent,
        version=instance.version,
        peer_address=instance.peer_address,
        capabilities=[
            catalog_pb2.Capability(
                name=c.name,
                input_schema_json=c.input_schema_json,
                output_schema_json=c.output_schema_json,
                schema_hash=c.schema_hash,
                description=c.description,
                default_timeout_ms=c.default_timeout_ms,
            )
            for c in instance.capabilities
        ],
        spiffe_id=instance.spiffe_id,
        registered_at=timestamp(instance.registered_at),
        lease_expires_at=timestamp(instance.lease_expires_at),
        svid_expires_at=timestamp(instance.svid_expires_at) if instance.svid_expires_at > 0 else None,
        enrolment=enrolment_to_proto(instance.enrolment) if with_enrolment else None,
    )


def enrolment_to_proto(enrolment: Enrolment) -> catalog_pb2.Enrolment:
    return catalog_pb2.Enrolment(
        how=enrolment.how,
        principal=enrolment.principal,
        token_id=enrolment.token_id,
        claimed_user=enrolment.claimed_user,
        enrolled_at=timestamp(enrolment.enrolled_at) if enrolment.enrolled_at > 0 else None,
    )


def event_to_proto(event: CatalogEvent) -> registry_pb2.WatchEvent:
    if isinstance(event, Upserted):
        return registry_pb2.WatchEvent(revision=event.revision, upserted=instance_to_proto(event.instance))
    return registry_pb2.WatchEvent(
        revision=event.revision,
        removed=registry_pb2.InstanceRemoved(instance_id=event.instance_id, reason=event.reason),
    )


def snapshot_to_proto(snapshot: Snapshot) -> registry_pb2.WatchEvent:
    return registry_pb2.WatchEvent(
        revision=snapshot.revision,
        snapshot=registry_pb2.CatalogSnapshot(instances=instances_to_proto(snapshot.instances)),
    )


def instances_to_proto(instances: Iterable[Instance], *, with_enrolment: bool = False) -> list[catalog_pb2.Instance]:
    return [instance_to_proto(i, with_enrolment=with_enrolment) for i in instances]


def timestamp(seconds: float) -> datetime:
    """Wall-clock seconds as the aware datetime protobuf accepts for a Timestamp field."""
    return datetime.fromtimestamp(seconds, tz=UTC)


def duration(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def bundle_to_proto(bundle: StoredBundle, *, with_artifact: bool = True) -> registry_pb2.PolicyBundle:
    return registry_pb2.PolicyBundle(
        name=bundle.name,
        revision=bundle.revision,
        digest=bundle.digest,
        artifact=bundle.artifact if with_artifact else b"",
        pushed_at=timestamp(bundle.pushed_at),
    )


def bundle_status_to_proto(status: SidecarBundleStatus, *, live: bool) -> registry_pb2.BundleStatus:
    return registry_pb2.BundleStatus(
        instance_id=status.instance_id,
        agent=status.agent,
        active_revision=status.active_revision,
        active_digest=status.active_digest,
        refused_revision=status.refused_revision,
        refusal=status.refusal,
        reported_at=timestamp(status.reported_at),
        live=live,
    )


def route_to_proto(route: StoredRoute) -> registry_pb2.Route:
    return registry_pb2.Route(
        capability=route.capability, weights=dict(route.weights), updated_at=timestamp(route.updated_at)
    )


def health_to_proto(health: InstanceHealth) -> catalog_pb2.InstanceHealth:
    return catalog_pb2.InstanceHealth(
        instance_id=health.instance_id,
        state=health.state,
        reason=health.reason,
        reporters=health.reporters,
        updated_at=timestamp(health.updated_at) if health.updated_at > 0 else None,
    )
