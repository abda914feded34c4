"""Who is acting on a task: the holder a sidecar's call names (checked against the catalog and
the caller's SVID), or the operator an operator credential proves.

A sidecar names one of its agent's registered instances; the SVID it presented must be that
agent's, and to lease, the instance must register every kind as a capability. Anything else is
refused here, before the queue touches a task.
"""

from __future__ import annotations

from meshwarden.registry.authz import Caller, require_agent
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.errors import InvalidInput, PermissionDenied, UnknownInstance
from meshwarden.registry.task_input import MAX_ID_CHARS
from meshwarden.registry.task_queue import Holder


async def holder_of(
    catalog: Catalog, instance_id: str, caller: Caller, action: str, kinds: tuple[str, ...] = ()
) -> Holder:
    """The caller's instance: registered, of the agent the caller's SVID names, serving `kinds`."""
    if not instance_id or len(instance_id) > MAX_ID_CHARS:
        raise InvalidInput("instance_id", f"is required, at most {MAX_ID_CHARS} characters")
    instance = await catalog.instance(instance_id)
    if instance is None:
        raise UnknownInstance(instance_id)
    identity = require_agent(caller, instance.agent, action)
    for kind in kinds:
        if not instance.serves(kind):
            raise PermissionDenied(
                f"instance {instance_id} of agent {identity.name} does not serve {kind!r}, so it may not "
                "lease tasks of that kind (a kind is a capability the instance registers)"
            )
    return Holder(instance_id=instance_id, agent=identity.name)


def operator_name(caller: Caller) -> str:
    """The credential's identity, with the user name the CLI claims in parentheses (never trusted)."""
    actor = caller.operator_id or "operator"
    return f"{actor} ({caller.claimed_user})" if caller.claimed_user else actor
