"""How the stores keep an instance: its JSON body (without the lease, which moves on every
renewal and has columns of its own) and a catalog event's row. Shared by every implementation
of the seam, so SQLite and PostgreSQL store and read the same bodies."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Final

from meshwarden.registry.errors import StoreError
from meshwarden.registry.model import (
    DEREGISTERED,
    LEASE_EXPIRED,
    Capability,
    CatalogEvent,
    Instance,
    Removed,
    Upserted,
)

# Every field of each, read once: the bodies are made field by field, without
# `dataclasses.asdict` (which deep-copies; it was most of a registration's store work).
_INSTANCE_FIELDS: Final = tuple(f.name for f in fields(Instance))
_CAPABILITY_FIELDS: Final = tuple(f.name for f in fields(Capability))
_LEASE_FIELDS: Final = frozenset({"lease_expires_at", "svid_expires_at"})  # columns of their own


def instance_body(instance: Instance, *, with_lease: bool = False) -> str:
    """The instance as sorted JSON (what `asdict` would give), without its lease unless asked:
    renewals update the lease columns only."""
    data: dict[str, object] = {
        name: getattr(instance, name) for name in _INSTANCE_FIELDS if with_lease or name not in _LEASE_FIELDS
    }
    data["capabilities"] = [{name: getattr(c, name) for name in _CAPABILITY_FIELDS} for c in instance.capabilities]
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
