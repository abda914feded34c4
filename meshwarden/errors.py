"""The errors the mesh raises, shared by the sidecar (which sends them) and the SDK (which
raises the same class in the agent). Branched by what the caller can do about them:

    MeshError
      Refused                 the mesh said no; the same call will fail again
        Unidentified          UNAUTHENTICATED    no verifiable identity (certificate, API token)
        PolicyDenied          PERMISSION_DENIED  the policy bundle says no; the message names the policy
        BadPayload            INVALID_ARGUMENT   fix the arguments
        PayloadTooLarge       RESOURCE_EXHAUSTED send less, or raise the limit
        UnknownCapability     NOT_FOUND          check the name (meshwarden agents list)
        SchemaDrift           FAILED_PRECONDITION the callee's contract changed under you
        KillSwitchEngaged     FAILED_PRECONDITION an operator stopped calls like this one (meshwarden kill list)
        NotRegistered         FAILED_PRECONDITION register the agent first
        OutcomeAlreadyReported FAILED_PRECONDITION the session's outcome was reported before; the message says what
        OutcomeRefused        PERMISSION_DENIED  this agent took no part in the session it reported on
      Unreachable             transient; a later attempt may succeed
        NoHealthyInstance     UNAVAILABLE        nothing live matches right now
        PeerUnavailable       UNAVAILABLE        the chosen instance could not be reached
          NotSent             UNAVAILABLE        ... and certainly did not start the call (safe to resend)
        PeerIdentityMismatch  UNAVAILABLE        the instance reached is not who the catalog says
        CircuitOpen           UNAVAILABLE        the instance kept failing; calls to it pause a while
        DeadlineExceeded      DEADLINE_EXCEEDED  the caller's deadline passed
        RegistryUnavailable   UNAVAILABLE        the sidecar could not reach the registry; try again
        ReceiptSpoolFull      UNAVAILABLE        the registry has not taken this sidecar's receipts for too long
      AgentFailed             the callee agent itself failed; its code is passed through

Each class fixes a gRPC status code and a stable `kind`, sent in the trailer
"meshwarden-error" so the SDK can raise the same class on the other side.
"""

from __future__ import annotations

from typing import ClassVar

import grpc

ERROR_TRAILER = "meshwarden-error"


class MeshError(Exception):
    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    kind: ClassVar[str] = "mesh_error"
    # Set by routing (outbound) when an attempt on a chosen instance failed; retries avoid it.
    failed_instance: str = ""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def status_code(self) -> grpc.StatusCode:
        return self.code

    @classmethod
    def from_wire(cls, kind: str, code: grpc.StatusCode, message: str) -> MeshError:
        """Rebuilds the error a sidecar sent (by its trailer kind), keeping its message."""
        target = _BY_KIND.get(kind)
        if target is None or target is AgentFailed:
            return AgentFailed(code, message) if kind == AgentFailed.kind else _Unclassified(code, kind, message)
        err = target.__new__(target)
        MeshError.__init__(err, message)
        return err


class Refused(MeshError):
    kind = "refused"


class Unreachable(MeshError):
    code = grpc.StatusCode.UNAVAILABLE
    kind = "unreachable"


class Unidentified(Refused):
    code = grpc.StatusCode.UNAUTHENTICATED
    kind = "unidentified"


class PolicyDenied(Refused):
    code = grpc.StatusCode.PERMISSION_DENIED
    kind = "policy_denied"


class BadPayload(Refused):
    code = grpc.StatusCode.INVALID_ARGUMENT
    kind = "bad_payload"


class PayloadTooLarge(Refused):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    kind = "payload_too_large"

    def __init__(self, size_bytes: int, limit_bytes: int, capability: str) -> None:
        super().__init__(
            f"payload for {capability} is {size_bytes} bytes, over the limit of {limit_bytes} bytes; "
            "send less, or raise the sidecar's --max-payload-bytes"
        )


class UnknownCapability(Refused):
    code = grpc.StatusCode.NOT_FOUND
    kind = "unknown_capability"

    def __init__(self, capability: str) -> None:
        super().__init__(
            f"no agent in the mesh serves capability {capability!r}; see what is served with: meshwarden agents list"
        )


class SchemaDrift(Refused):
    code = grpc.StatusCode.FAILED_PRECONDITION
    kind = "schema_drift"

    def __init__(self, capability: str, pinned: str, found: list[str]) -> None:
        super().__init__(
            f"schema drift on {capability}: the call pins {pinned} but live instances serve "
            f"{', '.join(sorted(set(found)))}; review the new schema and update the pin"
        )


class KillSwitchEngaged(Refused):
    """An operator's kill switch stops this call, before it started or while in flight.

    FAILED_PRECONDITION, not UNAVAILABLE: the same call fails until an operator lifts the
    switch, so clients, the retries stage and circuit breakers must not treat it as a transient
    outage (UNAVAILABLE invites retries against a stopped agent). Not PERMISSION_DENIED either:
    the caller's rights are fine, and dashboards should tell a stop from a policy denial.
    """

    code = grpc.StatusCode.FAILED_PRECONDITION
    kind = "killed"

    def __init__(self, switch_id: str, scope: str, reason: str, capability: str, *, in_flight: bool = False) -> None:
        what = "cancelled in flight" if in_flight else "refused"
        super().__init__(
            f"call to {capability} {what} by kill switch {switch_id} ({scope}): {reason}; an operator stopped "
            f"these calls (see meshwarden kill list; meshwarden kill lift {switch_id} ends it)"
        )


class NotRegistered(Refused):
    code = grpc.StatusCode.FAILED_PRECONDITION
    kind = "not_registered"


class OutcomeAlreadyReported(Refused):
    code = grpc.StatusCode.FAILED_PRECONDITION
    kind = "outcome_already_reported"


class OutcomeRefused(Refused):
    """Only an agent whose sidecar shipped a receipt of a session reports its outcome."""

    code = grpc.StatusCode.PERMISSION_DENIED
    kind = "outcome_refused"


class NoHealthyInstance(Unreachable):
    kind = "no_healthy_instance"

    def __init__(self, capability: str, version_range: str, detail: str) -> None:
        wanted = f"{capability} ({version_range})" if version_range else capability
        super().__init__(f"no live instance serves {wanted}: {detail}")


class PeerUnavailable(Unreachable):
    kind = "peer_unavailable"


class NotSent(PeerUnavailable):
    """The call certainly never started at the callee: the connection was refused, or the
    sidecar reached serves another instance. Resending it, even without a key, is safe."""

    kind = "not_sent"


class PeerIdentityMismatch(Unreachable):
    kind = "peer_identity_mismatch"


class CircuitOpen(Unreachable):
    kind = "circuit_open"

    def __init__(self, instance_id: str, agent: str, version: str, retry_in_s: float, reason: str = "") -> None:
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"circuit open for instance {instance_id} of {agent} {version}{why}: its recent calls kept failing "
            f"and no other instance could take the call; it gets a trial call in {max(retry_in_s, 0.0):.1f} s"
        )


class DeadlineExceeded(Unreachable):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    kind = "deadline_exceeded"


class RegistryUnavailable(Unreachable):
    kind = "registry_unavailable"


class ReceiptSpoolFull(Unreachable):
    """The sidecar's receipt spool is over its cap (sidecar.spool_backlog): no call without a receipt."""

    kind = "receipt_spool_full"


class AgentFailed(MeshError):
    """The callee agent failed; its status code and message are passed through."""

    kind = "agent_failed"

    def __init__(self, agent_code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.agent_code = agent_code

    def status_code(self) -> grpc.StatusCode:
        return self.agent_code


class _Unclassified(MeshError):
    """A kind this version does not know (a newer sidecar); keeps code, kind and message."""

    def __init__(self, code: grpc.StatusCode, kind: str, message: str) -> None:
        super().__init__(message)
        self._code, self._kind = code, kind

    def status_code(self) -> grpc.StatusCode:
        return self._code


def from_rpc_error(err: grpc.RpcError) -> MeshError | None:
    """The MeshError a sidecar sent (it carries the meshwarden-error trailer), else None.

    Works for both grpc.aio.AioRpcError and the sync stack's errors (which are grpc.Call)."""
    trailers = err.trailing_metadata() if isinstance(err, (grpc.aio.AioRpcError, grpc.Call)) else None
    for key, value in trailers or ():
        if key == ERROR_TRAILER:
            kind = value.decode() if isinstance(value, bytes) else value
            return MeshError.from_wire(kind, err.code(), err.details() or "")
    return None


def _all_subclasses(cls: type[MeshError]) -> list[type[MeshError]]:
    found: list[type[MeshError]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


# Built from the class tree above, once, at import; never mutated afterwards.
_BY_KIND: dict[str, type[MeshError]] = {c.kind: c for c in _all_subclasses(MeshError) if not c.__name__.startswith("_")}
