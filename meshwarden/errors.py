"""The errors the mesh raises, shared by the sidecar (which sends them) and the SDK (which
raises the same class in the agent). Branched by what the caller can do about them:

    MeshError
      Refused                 the mesh said no; the same call will fail again
        Unidentified          UNAUTHENTICATED    no verifiable identity (certificate, API token)
        PolicyDenied          PERMISSION_DENIED  the policy bundle says no; the message names the policy
        BadPayload            INVALID_ARGUMENT   fix the arguments
        PayloadTooLarge       RESOURCE_EXHAUSTED send less, or raise the limit
        BudgetExhausted       RESOURCE_EXHAUSTED a budget cannot cover the call's worst case; the message names it
        UnknownCapability     NOT_FOUND          check the name (meshwarden agents list)
        UnknownModel          NOT_FOUND          the bundle's models.json declares no such model
        UnknownTool           NOT_FOUND          no MCP tool of that name in the active bundle (tools/list)
        SchemaDrift           FAILED_PRECONDITION the callee's contract changed under you
          ToolSchemaDrift     FAILED_PRECONDITION an MCP tool's live input schema is not the declared one
        KillSwitchEngaged     FAILED_PRECONDITION an operator stopped calls like this one (meshwarden kill list)
        NotRegistered         FAILED_PRECONDITION register the agent first
        OutcomeAlreadyReported FAILED_PRECONDITION the session's outcome was reported before; the message says what
        OutcomeRefused        PERMISSION_DENIED  this agent took no part in the session it reported on
        ApprovalPending       FAILED_PRECONDITION a person must approve first; retry with its approval_id once approved
        ApprovalDenied        PERMISSION_DENIED  a person denied it, nobody decided in time, or the approval is for other arguments
        PrincipalMismatch     PERMISSION_DENIED  the session was started for someone else; an agent cannot change that
        KeyInDoubt            FAILED_PRECONDITION a call under this idempotency key may or may not have taken effect; use a new key
      Unreachable             transient; a later attempt may succeed
        NoHealthyInstance     UNAVAILABLE        nothing live matches right now
        PeerUnavailable       UNAVAILABLE        the chosen instance could not be reached
          NotSent             UNAVAILABLE        ... and certainly did not start the call (safe to resend)
        PeerIdentityMismatch  UNAVAILABLE        the catalog names no identity for the instance
        CircuitOpen           UNAVAILABLE        the instance kept failing; calls to it pause a while
          ToolServerCircuitOpen UNAVAILABLE      an MCP server kept failing; calls to it pause a while
        ToolServerUnavailable UNAVAILABLE        an MCP server could not be reached or did not answer
        DeadlineExceeded      DEADLINE_EXCEEDED  the caller's deadline passed
        RegistryUnavailable   UNAVAILABLE        the sidecar could not reach the registry; try again
        ReceiptSpoolFull      UNAVAILABLE        the registry has not taken this sidecar's receipts for too long
        ProvidersUnavailable  UNAVAILABLE        no provider of the model or its fallbacks answered
      AgentFailed             the callee agent itself failed (or answered a failure on purpose); its code is passed through
      Unclassified            a kind this version does not know (a newer sidecar or agent): kept as it came
      ProviderRefused         the model provider refused the request (its 4xx); its answer is passed through

Each class fixes a gRPC status code and a stable `kind`. An error carries its data as fields
(the instance it failed on, the kill switch, the deciding policies), and crosses the wire as a
google.rpc.Status whose ErrorInfo holds the kind as `reason` and the data as `metadata`
(meshwarden.error_status), so the other side rebuilds the same class with the same data and
nobody reads data back out of a message. The message is for people.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import ClassVar

import grpc

from meshwarden.budget_scopes import usd
from meshwarden.usage import MAX_MODEL_CHARS, Usage

Metadata = Mapping[str, str]  # google.rpc.ErrorInfo.metadata
KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")  # what a kind looks like, ours or a newer version's
MAX_DATA_CHARS = 8192  # one metadata value from another process, at most (a list of policy ids fits)


class MeshError(Exception):
    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    kind: str = "mesh_error"  # per class; an error of a kind this version does not know keeps its own

    def __init__(self, message: str, *, instance_id: str = "") -> None:
        super().__init__(message)
        self.message = message
        # The instance the call failed on, when one had been chosen ("" when none was): set by
        # the stage that raises it (peer, breaker, deadline); retries avoid that instance.
        self.instance_id = instance_id

    def status_code(self) -> grpc.StatusCode:
        return self.code

    def metadata(self) -> dict[str, str]:
        """The error's data, as the ErrorInfo metadata that carries it over the wire."""
        return {"instance_id": self.instance_id} if self.instance_id else {}

    @classmethod
    def rebuilt(cls, message: str, metadata: Metadata) -> MeshError:
        """The error of this class with the message and data another process sent."""
        err = cls.__new__(cls)
        MeshError.__init__(err, message, instance_id=metadata.get("instance_id", ""))
        return err

    @classmethod
    def from_wire(
        cls, kind: str, code: grpc.StatusCode, message: str, metadata: Metadata | None = None, *, instance_id: str = ""
    ) -> MeshError:
        """Rebuilds the error another process sent (by its kind), keeping message and data;
        `instance_id` names the instance it came from when the receiver knows better."""
        data = {key: value[:MAX_DATA_CHARS] for key, value in (metadata or {}).items()}  # data from outside
        if instance_id:
            data["instance_id"] = instance_id
        target = _BY_KIND.get(kind)
        if target is None:  # a kind from outside: kept when it looks like one, bounded either way
            return Unclassified(code, kind if KIND.fullmatch(kind) else MeshError.kind, message, data)
        if target is AgentFailed:
            cause = data.get("cause", "")
            return AgentFailed(
                code,
                message,
                cause=cause if KIND.fullmatch(cause) else "",
                instance_id=data.get("instance_id", ""),
                usage=_usage(data.get("usage", "")),
            )
        return target.rebuilt(message, data)


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

    def __init__(self, message: str, *, policy_ids: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.policy_ids = policy_ids  # the deciding policies' @ids (none: default deny)

    def metadata(self) -> dict[str, str]:
        data = super().metadata()
        if self.policy_ids:
            data["policy_ids"] = json.dumps(list(self.policy_ids))
        return data

    @classmethod
    def rebuilt(cls, message: str, metadata: Metadata) -> PolicyDenied:
        return cls(message, policy_ids=_strings(metadata.get("policy_ids", "")))


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


class BudgetExhausted(Refused):
    """A budget in the call's scope cannot cover its worst-case cost (`cost_estimate_micro_usd`).

    RESOURCE_EXHAUSTED, as a provider's 429: the same call fails until the period ends or an
    operator raises the budget. The fields name the budget and its numbers at decision time, and
    cross the wire as the error's data, so the caller's SDK has them too.
    """

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    kind = "budget_exhausted"
    _NUMBERS = ("limit_micro_usd", "spent_micro_usd", "reserved_micro_usd", "needed_micro_usd")

    def __init__(
        self,
        *,
        budget_id: str,
        scope: str,
        period: str,
        limit_micro_usd: int,
        spent_micro_usd: int,
        reserved_micro_usd: int,
        needed_micro_usd: int,
        capability: str,
        set_command: str,
        held_elsewhere: bool = False,
    ) -> None:
        self._fill(budget_id, scope, period, limit_micro_usd, spent_micro_usd, reserved_micro_usd, needed_micro_usd)
        why = (
            "what remains is held by other sidecars' slices that were not returned in time; try again shortly"
            if held_elsewhere
            else f"raise it ({set_command} --limit-usd N) or wait for the period to end"
        )
        super().__init__(
            f"budget {budget_id} ({scope}, per {period}) cannot cover this call to {capability}: it needs up to "
            f"{usd(needed_micro_usd)} and {usd(self.remaining_micro_usd)} remains of the {usd(limit_micro_usd)} "
            f"limit ({usd(spent_micro_usd)} spent, {usd(reserved_micro_usd)} reserved); {why}"
        )

    def _fill(
        self, budget_id: str, scope: str, period: str, limit: int, spent: int, reserved: int, needed: int
    ) -> None:
        self.budget_id, self.scope, self.period = budget_id, scope, period  # scope: "workflow wf-7"
        self.limit_micro_usd, self.spent_micro_usd = limit, spent
        self.reserved_micro_usd, self.needed_micro_usd = reserved, needed  # reserved: in sidecars' slices

    @property
    def remaining_micro_usd(self) -> int:
        """What a cheaper call could still reserve (a downgrade must fit in it)."""
        return max(self.limit_micro_usd - self.spent_micro_usd - self.reserved_micro_usd, 0)

    def metadata(self) -> dict[str, str]:
        numbers = {name: str(getattr(self, name)) for name in self._NUMBERS}
        return {
            **super().metadata(),
            "budget_id": self.budget_id,
            "scope": self.scope,
            "period": self.period,
            **numbers,
        }

    @classmethod
    def rebuilt(cls, message: str, metadata: Metadata) -> BudgetExhausted:
        err = cls.__new__(cls)
        MeshError.__init__(err, message, instance_id=metadata.get("instance_id", ""))
        numbers = [_count(metadata.get(name, "")) for name in cls._NUMBERS]
        err._fill(metadata.get("budget_id", ""), metadata.get("scope", ""), metadata.get("period", ""), *numbers)
        return err


def _count(text: str) -> int:
    """A non-negative whole number another process sent; 0 when it is not one."""
    return int(text) if text.isdigit() and len(text) <= 18 else 0


class UnknownCapability(Refused):
    """No agent in the mesh has ever served the capability: usually a misspelled name, so the
    message offers the nearest names the mesh knows (`suggestions`)."""

    code = grpc.StatusCode.NOT_FOUND
    kind = "unknown_capability"

    def __init__(self, capability: str, suggestions: tuple[str, ...] = ()) -> None:
        hint = f"; did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        super().__init__(
            f"no agent in the mesh serves capability {capability!r}{hint} "
            "(see what is served with: meshwarden agents list)"
        )
        self.capability, self.suggestions = capability, suggestions

    def metadata(self) -> dict[str, str]:
        return {**super().metadata(), "capability": self.capability, "suggestions": ",".join(self.suggestions)}

    @classmethod
    def rebuilt(cls, message: str, metadata: Metadata) -> UnknownCapability:
        err = cls.__new__(cls)
        MeshError.__init__(err, message, instance_id=metadata.get("instance_id", ""))
        err.capability = metadata.get("capability", "")
        err.suggestions = tuple(s for s in metadata.get("suggestions", "").split(",") if s)
        return err


class SchemaDrift(Refused):
    code = grpc.StatusCode.FAILED_PRECONDITION
    kind = "schema_drift"

    def __init__(self, capability: str, pinned: str, found: list[str]) -> None:
        super().__init__(
            f"schema drift on {capability}: the call pins {pinned} but live instances serve "
            f"{', '.join(sorted(set(found)))}; review the new schema and update the pin"
        )


class UnknownTool(Refused):
    code = grpc.StatusCode.NOT_FOUND
    kind = "unknown_tool"

    def __init__(self, tool: str, bundle: str) -> None:
        super().__init__(
            f"no MCP tool {tool!r} in {bundle}: tools are named SERVER.TOOL; see the tools this agent may use "
            "with tools/list, or ask the platform team to declare it in the bundle's mcp_servers.toml"
        )
        self.tool = tool

    def metadata(self) -> dict[str, str]:
        return {**super().metadata(), "tool": self.tool}

    @classmethod
    def rebuilt(cls, message: str, metadata: Metadata) -> UnknownTool:
        err = cls.__new__(cls)
        MeshError.__init__(err, message)
        err.tool = metadata.get("tool", "")
        return err


class ToolSchemaDrift(SchemaDrift):
    kind = "tool_schema_drift"

    def __init__(self, tool: str, declared: str, live: str) -> None:
        MeshError.__init__(
            self,
            f"schema drift on MCP tool {tool}: the bundle declares input schema sha256 {declared}, but the server "
            f"now serves {live}; the platform team must review the new schema and declare its hash "
            "(meshwarden tools hash) before the tool can be called",
        )
        self.tool, self.declared, self.live = tool, declared, live

    def metadata(self) -> dict[str, str]:
        return {**super().metadata(), "tool": self.tool, "declared_sha256": self.declared, "live_sha256": self.live}

    @classmethod
    def rebuilt(cls, message: str, metadata: Metadata) -> ToolSchemaDrift:
        err = cls.__new__(cls)
        MeshError.__init__(err, message)
        err.tool, err.declared = metadata.get("tool", ""), metadata.get("declared_sha256", "")
        err.live = metadata.get("live_sha256", "")
        return err


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
        self.switch_id, self.scope, self.in_flight = switch_id, scope, in_flight

    def metadata(self) -> dict[str, str]:
        return {
            **super().metadata(),
            "switch_id": self.switch_id,
            "scope": self.scope,
            "in_flight": "true" if self.in_flight else "false",
        }

    @classmethod
    def rebuilt(cls, message: str, metadata: Metadata) -> KillSwitchEngaged:
        err = cls.__new__(cls)
        MeshError.__init__(err, message, instance_id=metadata.get("instance_id", ""))
        err.switch_id, err.scope = metadata.get("switch_id", ""), metadata.get("scope", "")
        err.in_flight = metadata.get("in_flight") == "true"
        return err


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


class LeaseLost(Refused):
    """A task report (or a call) under a fencing token that is no longer current; the message
    names the task, its current holder and token."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    kind = "lease_lost"


class InvalidTaskTransition(Refused):
    """The task's state machine allows no such move now; the message names its state and holder."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    kind = "invalid_task_transition"


class UnknownTask(Refused):
    code = grpc.StatusCode.NOT_FOUND
    kind = "unknown_task"


class ApprovalPending(Refused):
    """The call needs a person's approval, which is pending: the agent asked not to wait, or
    its deadline ended first. FAILED_PRECONDITION, like a kill switch: the same call fails
    until the state changes (an operator approves), so nothing retries it on its own. The
    agent retries with the same arguments, sending `approval_id` (x-meshwarden-approval-id)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    kind = "approval_pending"

    def __init__(self, approval_id: str, capability: str, risks: tuple[str, ...] = (), *, waited: bool = False) -> None:
        why = f" ({'; '.join(risks)})" if risks else ""
        when = "was not decided before the call's deadline" if waited else "is pending"
        super().__init__(
            f"call to {capability} needs a person's approval{why}: approval {approval_id} {when}; an operator decides "
            f"with `meshwarden approvals approve {approval_id} --reason ...`, then retry the call with the same "
            f"arguments and header x-meshwarden-approval-id: {approval_id}"
        )
        self.approval_id, self.risks = approval_id, risks

    def metadata(self) -> dict[str, str]:
        return {**super().metadata(), "approval_id": self.approval_id, "risks": json.dumps(list(self.risks))}

    @classmethod
    def rebuilt(cls, message: str, metadata: Metadata) -> ApprovalPending:
        err = cls.__new__(cls)
        MeshError.__init__(err, message, instance_id=metadata.get("instance_id", ""))
        err.approval_id, err.risks = metadata.get("approval_id", ""), _strings(metadata.get("risks", ""))
        return err


class ApprovalDenied(Refused):
    """The approval this call needed says no: an operator denied it ("denied"), nobody decided
    in time ("expired": deny by default), it was used already ("used"), or it covers other
    arguments ("mismatch"). `reason` is the operator's, when one decided."""

    code = grpc.StatusCode.PERMISSION_DENIED
    kind = "approval_denied"

    def __init__(
        self, approval_id: str, decision: str, message: str, *, decided_by: str = "", reason: str = ""
    ) -> None:
        super().__init__(message)
        self.approval_id, self.decision, self.decided_by, self.reason = approval_id, decision, decided_by, reason

    def metadata(self) -> dict[str, str]:
        return {
            **super().metadata(),
            "approval_id": self.approval_id,
            "decision": self.decision,
            "decided_by": self.decided_by,
            "reason": self.reason,
        }

    @classmethod
    def rebuilt(cls, message: str, metadata: Metadata) -> ApprovalDenied:
        return cls(
            metadata.get("approval_id", ""),
            metadata.get("decision", ""),
            message,
            decided_by=metadata.get("decided_by", ""),
            reason=metadata.get("reason", ""),
        )


class PrincipalMismatch(Refused):
    """The agent named a principal (on_behalf_of) for a session its sidecar already knows was
    started for another one: the principal comes from the session's entry point and no agent
    downstream may change it. Leave on_behalf_of empty below the entry point."""

    code = grpc.StatusCode.PERMISSION_DENIED
    kind = "principal_mismatch"

    def __init__(self, message: str, *, session_id: str = "", started_for: str = "") -> None:
        super().__init__(message)
        self.session_id, self.started_for = session_id, started_for

    def metadata(self) -> dict[str, str]:
        return {**super().metadata(), "session_id": self.session_id, "started_for": self.started_for}

    @classmethod
    def rebuilt(cls, message: str, metadata: Metadata) -> PrincipalMismatch:
        return cls(message, session_id=metadata.get("session_id", ""), started_for=metadata.get("started_for", ""))


class KeyInDoubt(Refused):
    """A call under this idempotency key was handed to the agent and how it ended can never be
    known (the agent's connection dropped mid-call, say), so the callee's sidecar will not run
    the key again: it may already have taken effect. `reason` says why, as a stable word:
    agent_connection_lost, agent_deadline (it ran past the sidecar's bound), cancelled, or
    sidecar_fault."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    kind = "key_in_doubt"

    def __init__(self, *, idempotency_key: str, capability: str, agent: str, reason: str, what_happened: str) -> None:
        super().__init__(
            f"the call to {capability} under idempotency key {idempotency_key!r} was handed to agent {agent} and "
            f"its outcome cannot be known ({what_happened}), so it is not run again under this key: check whether "
            f"it took effect (the agent's own records, or its receipts), then call again with a new key if it did not"
        )
        self.idempotency_key, self.capability, self.agent, self.reason = idempotency_key, capability, agent, reason

    def metadata(self) -> dict[str, str]:
        return {
            **super().metadata(),
            "idempotency_key": self.idempotency_key,
            "capability": self.capability,
            "agent": self.agent,
            "reason": self.reason,
        }

    @classmethod
    def rebuilt(cls, message: str, metadata: Metadata) -> KeyInDoubt:
        err = cls.__new__(cls)
        MeshError.__init__(err, message, instance_id=metadata.get("instance_id", ""))
        err.idempotency_key, err.capability = metadata.get("idempotency_key", ""), metadata.get("capability", "")
        err.agent, err.reason = metadata.get("agent", ""), metadata.get("reason", "")
        return err


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
            f"and no other instance could take the call; it gets a trial call in {max(retry_in_s, 0.0):.1f} s",
            instance_id=instance_id,
        )


class ToolServerCircuitOpen(CircuitOpen):
    kind = "tool_circuit_open"

    def __init__(self, server: str, retry_in_s: float, reason: str = "") -> None:
        why = f" ({reason})" if reason else ""
        MeshError.__init__(
            self,
            f"circuit open for MCP server {server}{why}: its recent calls kept failing; "
            f"it gets a trial call in {max(retry_in_s, 0.0):.1f} s",
        )
        self.server = server

    def metadata(self) -> dict[str, str]:
        return {**super().metadata(), "server": self.server}

    @classmethod
    def rebuilt(cls, message: str, metadata: Metadata) -> ToolServerCircuitOpen:
        err = cls.__new__(cls)
        MeshError.__init__(err, message)
        err.server = metadata.get("server", "")
        return err


class ToolServerUnavailable(Unreachable):
    kind = "tool_server_unavailable"


class DeadlineExceeded(Unreachable):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    kind = "deadline_exceeded"


class RegistryUnavailable(Unreachable):
    kind = "registry_unavailable"


class ReceiptSpoolFull(Unreachable):
    """The sidecar's receipt spool is over its cap (sidecar.spool_backlog): no call without a receipt."""

    kind = "receipt_spool_full"


class AgentFailed(MeshError):
    """The callee agent failed; its status code and message are passed through. `cause` is the
    kind of the error the agent failed with when it was a mesh error of its own (a call it made
    was refused, say), "" when the agent failed the call itself."""

    kind = "agent_failed"

    def __init__(
        self,
        agent_code: grpc.StatusCode,
        message: str,
        *,
        cause: str = "",
        instance_id: str = "",
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message, instance_id=instance_id)
        self.agent_code, self.cause = agent_code, cause
        # What the handler reported consuming before it failed: spent all the same, so the
        # receipts (and costs) keep it.
        self.usage = usage

    def status_code(self) -> grpc.StatusCode:
        return self.agent_code

    def metadata(self) -> dict[str, str]:
        data = super().metadata()
        if self.cause:
            data["cause"] = self.cause
        if self.usage is not None:
            data["usage"] = json.dumps(
                [self.usage.model, self.usage.input_tokens, self.usage.output_tokens, self.usage.cost_micro_usd]
            )
        return data


class UnknownModel(Refused):
    code = grpc.StatusCode.NOT_FOUND
    kind = "unknown_model"

    def __init__(self, model: str, known: list[str]) -> None:
        shown = ", ".join(sorted(known)[:20]) or "none"
        super().__init__(
            f"the model {model[:128]!r} is not in this sidecar's model catalog (models known: {shown}); ask "
            "for one of those, or ask the platform team to declare it in the policy bundle's models.json"
        )


class ProvidersUnavailable(Unreachable):
    kind = "providers_unavailable"

    def __init__(self, model: str, tried: list[str]) -> None:
        super().__init__(
            f"no provider answered for model {model}: {'; '.join(tried)}; try again later, or ask the platform "
            "team to declare a fallback for it in models.json"
        )


class ProviderRefused(MeshError):
    """The provider answered the request with a client error (4xx other than 429). Its status
    and body (in the provider's own shape, keys redacted) go back to the client as they came."""

    kind = "provider_refused"
    http_status: int = 400  # as the provider answered (class defaults: an error rebuilt from the wire has none)
    body: bytes = b""
    _CODES: ClassVar[dict[int, grpc.StatusCode]] = {
        401: grpc.StatusCode.UNAVAILABLE,  # the sidecar's key, not the agent's fault
        403: grpc.StatusCode.PERMISSION_DENIED,
        404: grpc.StatusCode.NOT_FOUND,
        413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    }

    def __init__(self, provider: str, http_status: int, body: bytes, message: str) -> None:
        super().__init__(f"provider {provider} refused the request with HTTP {http_status}: {message[:500]}")
        self.http_status, self.body = http_status, body

    def status_code(self) -> grpc.StatusCode:
        return self._CODES.get(self.http_status, grpc.StatusCode.INVALID_ARGUMENT)


class Unclassified(MeshError):
    """A kind this version does not know (a newer sidecar or agent): keeps its code, kind,
    message and data, so it travels on as it came."""

    def __init__(self, code: grpc.StatusCode, kind: str, message: str, metadata: Metadata) -> None:
        super().__init__(message, instance_id=metadata.get("instance_id", ""))
        self.kind, self._code, self._metadata = kind, code, dict(metadata)

    def status_code(self) -> grpc.StatusCode:
        return self._code

    def metadata(self) -> dict[str, str]:
        return {**self._metadata, **super().metadata()}


def _strings(text: str) -> tuple[str, ...]:
    """A JSON list of strings from metadata; anything else is no list (data from outside)."""
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return ()
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _all_subclasses(cls: type[MeshError]) -> list[type[MeshError]]:
    found: list[type[MeshError]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


# Built from the class tree above, once, at import; never mutated afterwards.
_BY_KIND: dict[str, type[MeshError]] = {c.kind: c for c in _all_subclasses(MeshError) if c is not Unclassified}


def _usage(text: str) -> Usage | None:
    """The usage an AgentFailed carried ([model, input, output, cost]); None when absent or malformed."""
    try:
        model, input_tokens, output_tokens, cost = json.loads(text) if text else (None, 0, 0, 0)
    except (ValueError, TypeError):
        return None
    numbers = (input_tokens, output_tokens, cost)
    if not isinstance(model, str) or not all(isinstance(n, int) and 0 <= n < 2**63 for n in numbers):
        return None
    return Usage(model[:MAX_MODEL_CHARS], input_tokens, output_tokens, cost) if any((model, *numbers)) else None
