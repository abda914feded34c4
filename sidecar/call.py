"""The only contract stages share: a Call goes in, a Reply comes out, a Layer wraps a Handler.

A stage learns things about a call (the instance routing picked, the attempt number) and
passes them on with `dataclasses.replace`; it never mutates the Call it was given. What the
reporting concerns (spans, receipts, metrics) need once the call has ended goes into the
call's `CallRecord` instead, because an outer stage never sees the Calls inner stages made.
What a call produced travels back in what it returns: the `Reply` (its result and usage) or
the error it raised (meshwarden.errors, each carrying its data).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar, dataclass_transform

from meshwarden.session_labels import Labels
from meshwarden.sidecar.catalog import Endpoint
from meshwarden.sidecar.model_call import ModelOutcome, ModelRequest
from meshwarden.sidecar.payload_facts import PayloadFacts
from meshwarden.usage import Usage  # the SDK's: one type for what a call consumed, both sides

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def _immutable(cls: type[_T]) -> type[_T]:
    """A frozen dataclass to the type checker (mypy --strict refuses any assignment to a field),
    a plain slots dataclass at run time. A `Call` is built and copied (`dataclasses.replace`)
    several times per call on each sidecar, and a frozen dataclass's `__init__` sets each of
    its many fields through `object.__setattr__`: 5 times slower than plain assignment
    (benchmarks/README.md, "Retries, idempotency and the circuit breaker on the hot path")."""
    return dataclass(slots=True)(cls)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who makes the call, as this sidecar knows it."""

    agent: str
    instance_id: str
    spiffe_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolUse:
    """What a tool call (kind "tool") is, once the tool check found it in the bundle: what its
    receipt, span and the approval stage read. `arguments_sha256` is what an approval binds to."""

    server: str
    tool: str
    schema_sha256: str  # the input schema's hash the bundle declares (the server's matched it)
    risk: str  # "read" | "write" | "destructive"
    arguments_sha256: str  # "sha256:<hex>" of the arguments as sent, as in the receipt
    cost_micro_usd: int | None = None  # the bundle's price per call, if it gives one


@dataclass(slots=True)
class CallRecord:
    """What happened to one call, written by the stage that learns it and read once the call
    has ended by the stages that report it (tracing, receipts, metrics).

    It is the one mutable thing a Call carries: every `replace` of a Call shares the same
    record, so the outermost stage sees the decision, the attempts and the instance that the
    inner stages saw. Only the stage named beside a field writes it.
    """

    policy_decision: str = ""  # policy gate: "allow" or "deny"; "" when no decision was made
    policy_ids: tuple[str, ...] = ()  # policy gate: the deciding policies' @ids
    attempt: int = 0  # routing / target_check: the number of the last attempt (0: none was routed)
    target: Endpoint | None = None  # routing / target_check: the instance of the last attempt
    breaker_state: str = ""  # breaker: the target's breaker state when the attempt went through
    kill_switch_id: str = ""  # the kill-switch stage: the switch that refused or cancelled the call
    tool: ToolUse | None = None  # tool check (kind "tool"): the declared tool the call is for
    tool_result_class: str = ""  # MCP server hop: "ok" or "tool_error" (the server's isError)
    model: ModelOutcome | None = None  # the provider hop: which provider and model answered, and how
    approval_risks: tuple[str, ...] = ()  # policy gate: a person must approve first, because of these
    approval_ttl_s: int = 0  # policy gate: how long that decision may take
    approval_id: str = ""  # approval stage: the approval asked for or used
    approval_decision: str = ""  # approval stage: "approved", "denied", "expired", "used", "pending"
    approver: str = ""  # approval stage: who decided
    budget_ids: tuple[str, ...] = ()  # budget: the budgets the call drew on
    budget_reserved_micro_usd: int = 0  # budget: its worst case, reserved before it left
    budget_settled_micro_usd: int = 0  # budget: what it was charged once it ended
    budget_downgraded_to: str = ""  # budget: what ran instead, when a budget made the call run cheaper
    budget_short: str = ""  # budget: the budget that refused the call as asked (then a downgrade may run)
    on_behalf_of: str = ""  # session_principal: who the session was started for
    on_behalf_of_source: str = ""  # session_principal: "agent", "session" or "peer"
    on_behalf_of_refused: str = ""  # session_principal: another principal the agent claimed (refused)
    session_labels: Labels = ()  # session_principal: the labels the session was started with


@_immutable
class Call:
    call_id: str
    # What is called: a capability ("billing.refund"), a model as the client asked for it
    # ("gpt-4o-mini") or an MCP tool as "server.tool", by `kind`.
    capability: str
    payload: bytes  # UTF-8 JSON text, passed through untouched
    caller: Caller
    # Absolute deadline on the sidecar's monotonic clock; every call has one (a default
    # applies when the agent sets none), so nothing waits forever.
    deadline: float
    # Inbound, keyed: the caller's own deadline, when the idempotency stage let the delivery run
    # past it (`deadline` is then the stage's bound); 0.0 when `deadline` is the caller's.
    caller_deadline: float = 0.0
    version_range: str = ""
    schema_hash: str = ""
    session_id: str = ""
    workflow_id: str = ""
    attempt: int = 1
    cost_estimate_micro_usd: int | None = None
    # The caller's key for this logical call ("" for none): retries may resend a keyed call
    # that failed in transit, and the callee's sidecar runs each key once.
    idempotency_key: str = ""
    # Set by retries (outbound): instances a previous attempt failed on; routing avoids them
    # while any other instance qualifies.
    avoid_instances: frozenset[str] = frozenset()
    # Inbound only: the instance the calling sidecar routed to, and the agent it says it
    # calls for (checked against its certificate by peer_identity, never trusted).
    target_instance_id: str = ""
    claimed_caller: str = ""
    # The call the calling agent was handling when it made this one ("" at a session's top):
    # what makes a session's timeline a tree. Carried to the callee and into receipts.
    parent_call_id: str = ""
    # Set by routing (outbound) or by the target check (inbound).
    target: Endpoint | None = None
    # W3C trace context as received ("" when none): the tracing stage continues it and puts
    # its own span's context here for the next hop (the peer call, the agent's delivery).
    traceparent: str = ""
    tracestate: str = ""
    kind: Literal["agent", "model", "tool"] = "agent"
    # The registry's signed fencing claim of the task the call works on (b"" when none); the
    # task_fence stage refuses the call when it is not current.
    task_token: bytes = b""
    # Inbound only: why the calling sidecar's certificate names no agent's sidecar ("" when it
    # does); peer_identity refuses the call with it, so the refusal leaves a receipt.
    identity_problem: str = ""
    # Model calls only: what the model gateway's edge read from the client's request.
    model: ModelRequest | None = None
    # From the agent's request metadata: an approval it was given earlier for this same call
    # (x-meshwarden-approval-id), and whether it waits for a pending approval or is answered at
    # once with its id (x-meshwarden-approval-wait: none).
    approval_id: str = ""
    approval_wait: bool = True
    # Who the session was started for: as the agent (or the calling sidecar) said it, then as the
    # session_principal stage settled it (the session's first, carried to the peer).
    on_behalf_of: str = ""
    # Free labels the session is started with (meshwarden.session_labels), settled the same way.
    session_labels: Labels = ()
    # Shared by every replace() of this call; see CallRecord.
    record: CallRecord = field(default_factory=CallRecord, compare=False, repr=False)
    # Shared likewise: the payload's digest and parsed forms, each worked out once (payload_facts.py).
    payload_facts: PayloadFacts = field(default_factory=PayloadFacts, compare=False, repr=False)

    @property
    def payload_sha256(self) -> str:
        """The payload's digest, "sha256:<hex>", as receipts, approvals and the tool check name it."""
        return self.payload_facts.sha256(self.payload)

    @property
    def payload_value(self) -> object:
        """The payload as strict JSON (strict_json.loads); raises its ValueError. Do not change it."""
        return self.payload_facts.json(self.payload)

    def cedar_arguments(self) -> dict[str, object]:
        """The payload as Cedar's mapping reads it (cedar_values.parse_arguments); raises its
        ArgumentsNotMappable. Do not change it. A method, so that the policy stage can hand
        it to a decision that parses only when some policy reads the arguments."""
        return self.payload_facts.cedar_arguments(self.payload)


@dataclass(frozen=True, slots=True)
class Reply:
    result: bytes  # UTF-8 JSON text
    instance_id: str
    agent: str
    version: str
    usage: Usage | None = None  # what the call consumed, as the callee (or provider) reported it


Handler = Callable[[Call], Awaitable[Reply]]
Layer = Callable[[Handler], Handler]


def compose(layers: Sequence[Layer], innermost: Handler) -> Handler:
    """Wraps `innermost` in `layers`, the first layer outermost (the order a call travels)."""
    handler = innermost
    for layer in reversed(layers):
        handler = layer(handler)
    return handler
