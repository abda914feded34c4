"""How the stores keep an instance: its JSON body (without the lease, which moves on every
renewal and has columns of its own) and a catalog event's row. Shared by every implementation
of the seam, so SQLite and PostgreSQL store and read the same bodies."""

from __future__ import annotations

import json
from dataclasses import asdict

from meshwarden.registry.errors import StoreError
from meshwarden.registry.model import (
    DEREGISTERED,
    LEASE_EXPIRED,
    NOT_RECORDED,
    Capability,
    CatalogEvent,
    Enrolment,
    Instance,
    Removed,
    Upserted,
)


def instance_body(instance: Instance, *, with_lease: bool = False) -> str:
    data = asdict(instance)
    if not with_lease:
        del data["lease_expires_at"]  # kept in their own columns: renewals update only those
        del data["svid_expires_at"]
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def instance_from_row(body: str, lease_expires_at: float, svid_expires_at: float) -> Instance:
    return _instance_from_json(json.loads(body), lease_expires_at, svid_expires_at)


def _instance_from_json(data: dict[str, object], lease_expires_at: float, svid_expires_at: float) -> Instance:
    capabilities = data["capabilities"]
    if not isinstance(capabilities, list):
        raise StoreError(f"corrupt instance record {data.get('instance_id')!r}: capabilities is not a list")
    return Instance(
        instance_id=str(data["instance_id"]),
        agent=str(data["agent"]),
        version=str(data["version"]),
        peer_address=str(data["peer_address"]),
        capabilities=tuple(Capability(**c) for c in capabilities),
        spiffe_id=str(data["spiffe_id"]),
        registered_at=_number(data["registered_at"]),
        lease_expires_at=float(lease_expires_at),
        svid_expires_at=float(svid_expires_at),
        enrolment=_enrolment(data.get("enrolment")),
    )


def _enrolment(data: object) -> Enrolment:
    """An instance's enrolment as stored; instances stored before enrolments were kept have none."""
    if data is None:
        return NOT_RECORDED
    if not isinstance(data, dict):
        raise StoreError(f"corrupt instance record: enrolment is {data!r}")
    return Enrolment(
        how=str(data["how"]),
        principal=str(data["principal"]),
        token_id=str(data.get("token_id", "")),
        claimed_user=str(data.get("claimed_user", "")),
        enrolled_at=_number(data.get("enrolled_at", 0.0)),
    )


def _number(value: object) -> float:
    if not isinstance(value, (int, float)):
        raise StoreError(f"corrupt record: expected a number, got {value!r}")
    return float(value)


def event_from_row(revision: int, instance_id: str, kind: str, body: str | None, reason: str | None) -> CatalogEvent:
    if kind == "upserted":
        if body is None:
            raise StoreError(f"corrupt event at revision {revision}: upserted without an instance")
        data = json.loads(body)
        instance = _instance_from_json(
            data,
            _number(data["lease_expires_at"]),
            _number(data.get("svid_expires_at", 0.0)),  # absent before v2
        )
        return Upserted(revision=revision, instance=instance)
    if reason not in (DEREGISTERED, LEASE_EXPIRED):
        raise StoreError(f"corrupt event at revision {revision}: unknown removal reason {reason!r}")
    return Removed(revision=revision, instance_id=instance_id, reason=reason)
