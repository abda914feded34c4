"""The registry's domain values: instances, capabilities and catalog events.

Frozen dataclasses so that what the store reads, the catalog decides and the server sends can
never be changed behind anyone's back; the server converts them to protobuf at the edge
(registry.wire). Times are wall-clock seconds since the Unix epoch (from the injected Clock),
because leases are stored on disk and must mean the same thing after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

RemovalReason = Literal["deregistered", "lease_expired"]
DEREGISTERED: Final[RemovalReason] = "deregistered"
LEASE_EXPIRED: Final[RemovalReason] = "lease_expired"


@dataclass(frozen=True, kw_only=True, slots=True)
class Capability:
    name: str
    input_schema_json: str = ""
    output_schema_json: str = ""
    schema_hash: str
    description: str = ""
    default_timeout_ms: int = 0  # 0: the caller's sidecar applies its own default


# How an instance's SVID came to be (Enrolment.how).
JOIN_TOKEN: Final = "join_token"  # enrolled with a join token an operator credential made
OPEN_ENROLMENT: Final = "open_enrolment"  # enrolled without a token (loopback registries only)
CA_KEY: Final = "ca_key"  # this registry's CA signed it outside an enrolment (whoever holds the CA key)
SPIRE: Final = "spire"  # another CA the registry trusts signed it (SPIRE through the Workload API)
UNRECORDED: Final = "unrecorded"  # registered before the registry recorded enrolments


@dataclass(frozen=True, kw_only=True, slots=True)
class Enrolment:
    """Who let an instance into the mesh, as its certificate says (never as the sidecar says).

    The embedded issuer writes it into every SVID it signs at enrolment and copies it into each
    renewal (registry.enrolment_extension), so it holds for as long as the identity lives,
    even after the join token is forgotten. `principal` is what the listings show: the operator
    credential's id for a join token, else the word for how the SVID came to be (never blank).
    """

    how: str
    principal: str
    token_id: str = ""
    claimed_user: str = ""  # the name the operator's CLI sent ($USER): a claim, shown as one
    enrolled_at: float = 0.0

    @property
    def label(self) -> str:
        """One cell of a table: "operator:sha256:1a2b… (claims alice)", "spire"."""
        return f"{self.principal} (claims {self.claimed_user})" if self.claimed_user else self.principal


NOT_RECORDED: Final = Enrolment(how=UNRECORDED, principal=UNRECORDED)


@dataclass(frozen=True, kw_only=True, slots=True)
class InstanceSpec:
    """What a sidecar asks to register; `instance_id` is empty when the registry should pick one."""

    instance_id: str = ""
    agent: str
    version: str
    peer_address: str
    capabilities: tuple[Capability, ...] = ()
    spiffe_id: str = ""  # set by the registry from the caller's SVID, never taken from the sidecar
    svid_expires_at: float = 0.0  # notAfter of that SVID; 0 when unknown
    enrolment: Enrolment = NOT_RECORDED  # set by the registry from that SVID, never taken from the sidecar


@dataclass(frozen=True, kw_only=True, slots=True)
class Instance:
    """One registered instance with its lease."""

    instance_id: str
    agent: str
    version: str
    peer_address: str
    capabilities: tuple[Capability, ...]
    spiffe_id: str
    registered_at: float
    lease_expires_at: float
    # notAfter of the SVID the sidecar last presented (Register or Renew); 0 when unknown.
    svid_expires_at: float = 0.0
    # Who let it in, from the SVID it registered with (Enrolment).
    enrolment: Enrolment = NOT_RECORDED

    def serves(self, capability: str) -> bool:
        return any(c.name == capability for c in self.capabilities)


@dataclass(frozen=True, kw_only=True, slots=True)
class Upserted:
    """An instance was added or replaced; brings a watcher to `revision`."""

    revision: int
    instance: Instance


@dataclass(frozen=True, kw_only=True, slots=True)
class Removed:
    """An instance left the catalog; brings a watcher to `revision`."""

    revision: int
    instance_id: str
    reason: RemovalReason


CatalogEvent = Upserted | Removed


@dataclass(frozen=True, kw_only=True, slots=True)
class Snapshot:
    """The whole catalog at one revision."""

    revision: int
    instances: tuple[Instance, ...]
