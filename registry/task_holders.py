"""Who is acting on a task: the holder a sidecar's call names, or the operator an operator
credential proves.

To lease, a sidecar names one of its agent's registered instances; the SVID it presented must
be that agent's, and the instance must register every kind as a capability. A report
(heartbeat, start, complete) names the instance and the agent the SVID proves; the queue
accepts it only when both match the task's current holder under the current token, so it
needs no catalog lookup, and a holder whose instance lapsed meanwhile (frozen past its
registration) hears "lease lost", not "unknown instance".
"""

from __future__ import annotations

from meshwarden.registry.authz import Caller, require_agent
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.errors import InvalidInput, PermissionDenied, Unauthenticated, UnknownInstance
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


def reporter(instance_id: str, caller: Caller, action: str) -> Holder:
    """The holder a report claims to be: the instance it names, of the agent its SVID proves."""
    if not instance_id or len(instance_id) > MAX_ID_CHARS:
        raise InvalidInput("instance_id", f"is required, at most {MAX_ID_CHARS} characters")
    identity = caller.identity
    if identity is None or identity.kind != "agent":
        raise Unauthenticated(f"{action} needs the holding agent's SVID, and {caller} presented none")
    return Holder(instance_id=instance_id, agent=identity.name)


def submitter(caller: Caller) -> str:
    """Who submits: an agent by the SPIFFE ID its SVID proves, else the operator."""
    if caller.identity is not None and not caller.operator:
        return caller.identity.spiffe_id
    return operator_name(caller)


def operator_name(caller: Caller) -> str:
    """The credential's identity, with the user name the CLI claims in parentheses (never trusted)."""
    actor = caller.operator_id or "operator"
    return f"{actor} ({caller.claimed_user})" if caller.claimed_user else actor
