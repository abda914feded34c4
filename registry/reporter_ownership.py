"""A sidecar reports health and bundle status only as an instance its certificate owns.

Owned means: in the catalog as an instance of the caller's agent, or, for a pure caller
(a sidecar whose agent serves nothing, so never in the catalog), an instance id in the
caller's own name space (`<agent>-...`, the form sidecars make their ids in) that is not in
the catalog, or the id of a receipt chain the caller's SPIFFE ID shipped (registry.receipt_chain
binds a chain to the SVID that shipped its first batch; this covers a custom --instance-id).
Anything else is refused (FAILED_PRECONDITION): an agent's certificate can neither speak for
another agent's instance nor invent sidecars of other agents; what it reports is shown under
its own agent's name.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshwarden.identity.spiffe_ids import Identity
from meshwarden.registry.authz import Caller, require_agent
from meshwarden.registry.errors import Conflict, InvalidInput, Unauthenticated

MAX_INSTANCE_ID_CHARS = 128


@dataclass(frozen=True, slots=True)
class Reporter:
    identity: Identity
    registered: bool  # in the catalog when it reported


def owned_reporter(
    caller: Caller,
    instance_id: str,
    catalog_agent: str | None,
    chain_owner: str | None,
    action: str,
) -> Reporter:
    """`caller` as the owner of `instance_id`, or the error that says why it is not;
    `catalog_agent` is the agent of `instance_id` in the catalog and `chain_owner` the SPIFFE ID
    that shipped the receipt chain of that id (None when there is none)."""
    if not instance_id or len(instance_id) > MAX_INSTANCE_ID_CHARS:
        raise InvalidInput(
            "instance_id", f"must be this sidecar's own instance id (1 to {MAX_INSTANCE_ID_CHARS} characters)"
        )
    if catalog_agent is not None:
        return Reporter(require_agent(caller, catalog_agent, f"{action} as instance {instance_id}"), registered=True)
    identity = caller.identity
    if identity is None or identity.kind != "agent":
        raise Unauthenticated(f"{action} needs a sidecar's SVID, and {caller} presented none")
    if not instance_id.startswith(f"{identity.name}-") and chain_owner != identity.spiffe_id:
        raise Conflict(
            f"instance {instance_id} is not one of agent {identity.name}'s: not in the catalog as its, not named "
            f"{identity.name}-..., and no receipt chain its sidecar shipped; a sidecar reports only as its own "
            f"instance ({action})"
        )
    return Reporter(identity, registered=False)
