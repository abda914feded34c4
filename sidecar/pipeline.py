"""The order of the stages, in the order a call travels. This is the only place it is set;
tests/unit/sidecar/test_pipeline.py checks it against the order README.md documents.

Every call the local agent makes passes the same outer stages (`outer_layers`), whatever its
kind; then the kind's own routing and last hop (`of_kind`): `outbound` for calls to other
agents, `tool` for MCP tool calls, and likewise a function for model calls. Calls from other agents'
sidecars (`inbound`) are of kind "agent" only."""

from __future__ import annotations

from collections.abc import Sequence

from meshwarden.policy_bundle.model_catalog import EMPTY as EMPTY_CATALOG
from meshwarden.policy_bundle.model_catalog import ModelCatalog
from meshwarden.sidecar.budget_downgrade import cheaper_fallback
from meshwarden.sidecar.call import Handler, Layer, compose
from meshwarden.sidecar.hops import mcp_server, provider
from meshwarden.sidecar.runtime import Runtime
from meshwarden.sidecar.stages import (
    approval,
    breaker,
    budget,
    deadline,
    deliver,
    idempotency,
    inbound_policy,
    kill_switch,
    known_capability,
    metrics,
    model_routing,
    outbound_policy,
    payload_limit,
    peer,
    peer_identity,
    receipts,
    result_contract,
    retries,
    routing,
    schema_check,
    session_principal,
    target_check,
    task_fence,
    tool_breaker,
    tool_check,
    tracing,
)


def outer_layers(
    rt: Runtime, *, admission: Sequence[Layer] = (), downgrade: budget.Downgrade | None = None
) -> list[Layer]:
    """The stages every call this sidecar's agent makes passes, whatever its kind (agent,
    model, tool), written once: a receipt, a span, a metric, a kill switch, a policy decision,
    an approval and a budget reservation work the same way for all. `admission` holds a kind's
    own checks that must pass before policy decides (a tool's: its server's breaker, its
    declaration, schema drift and its arguments against the schema); a kind that can run
    cheaper when a budget is short (models: a declared fallback) gives `downgrade`."""
    return [  # outermost first
        tracing.layer(rt.tracing, "outbound", _kind_of(rt)),  # a CLIENT span, continuing the agent's trace
        metrics.layer(rt.metrics, "outbound", _known(rt), rt.clock),  # counted and timed once it ends
        receipts.layer("outbound", rt.receipts, rt.policy, rt.local, rt.clock),  # every call, however it ends
        session_principal.outbound(
            rt.principals, rt.session_labels
        ),  # who the session is for: the entry point's, never changed
        # an operator's stop, before anything else is spent on the call; steers away from killed callees
        kill_switch.outbound(rt.controls, rt.local, rt.policy, rt.catalog),
        task_fence.layer(rt.fences),  # a call under a task's stale fencing token never leaves
        payload_limit.layer(rt.config.max_payload_bytes),  # cheapest refusal first
        *admission,
        outbound_policy.layer(rt.policy, rt.clock, rt.config.allow_without_policy),  # may it call this? (Cedar)
        approval.layer(rt.approvals, rt.policy, rt.clock),  # a person's yes first, when policy asks for one
        # reserve the worst case, settle to the measured cost after (a cheaper call when allowed);
        # after approval, so a call waiting for a person holds no budget
        budget.layer(rt.budgets, rt.policy, downgrade),
    ]


def agent_route_layers(rt: Runtime) -> list[Layer]:
    """How a call to another agent's capability finds its instance, within the outer stages."""
    return [
        retries.layer(_retry_settings(rt), rt.clock, rt.rng),  # safe retries only, each re-routed
        routing.layer(
            rt.catalog, rt.rng, rt.breakers, rt.routes, rt.sessions, rt.latency
        ),  # a live instance of the right version and schema, the faster and less loaded of two
        breaker.layer(rt.breakers),  # fail fast on an instance that keeps failing
        schema_check.layer(rt.schemas),  # a bad call never leaves
        deadline.layer(rt.clock),  # the call ends when the caller's deadline does
    ]


def agent_admission_layers(rt: Runtime) -> list[Layer]:
    """An agent call's own check before policy decides: a name the mesh never served is unknown
    (with the nearest known names), not denied."""
    return [known_capability.layer(rt.catalog)]


def outbound_layers(rt: Runtime) -> list[Layer]:
    return [*outer_layers(rt, admission=agent_admission_layers(rt)), *agent_route_layers(rt)]


def of_kind(
    rt: Runtime,
    route: Sequence[Layer],
    last_hop: Handler,
    *,
    admission: Sequence[Layer] = (),
    downgrade: budget.Downgrade | None = None,
) -> Handler:
    """The pipeline for one kind of call: the outer stages, then the kind's own routing, then
    its last hop (the peer sidecar, a model provider, an MCP server)."""
    return compose([*outer_layers(rt, admission=admission, downgrade=downgrade), *route], innermost=last_hop)


def tool_admission_layers(rt: Runtime) -> list[Layer]:
    """What a tool call must pass before policy decides on it."""
    return [
        tool_breaker.layer(rt.tool_breakers),  # fail fast on an MCP server that keeps failing
        tool_check.layer(rt.policy, rt.mcp_upstreams, rt.clock),  # declared? schema drift? valid arguments?
    ]


def tool_route_layers(rt: Runtime) -> list[Layer]:
    return [deadline.layer(rt.clock)]  # one declared server: nothing to choose, only a deadline to keep


def inbound_layers(rt: Runtime) -> list[Layer]:
    return [
        tracing.layer(rt.tracing, "inbound", _kind_of(rt)),  # a SERVER span, continuing the caller's trace
        metrics.layer(rt.metrics, "inbound", _serves(rt), rt.clock),
        receipts.layer("inbound", rt.receipts, rt.policy, rt.local, rt.clock),
        peer_identity.layer(),  # the caller is its certificate's SPIFFE ID, whatever it claims
        session_principal.inbound(
            rt.principals, rt.session_labels
        ),  # the session's principal, carried for this agent's own calls
        kill_switch.inbound(rt.controls, rt.local, rt.policy),  # an operator's stop, matched on the mTLS caller too
        task_fence.layer(rt.fences),  # the task token checked again: a stale one is never delivered
        target_check.layer(rt.local),  # for this instance and a capability it serves?
        payload_limit.layer(rt.config.max_payload_bytes),
        inbound_policy.layer(rt.policy, rt.clock, rt.config.allow_without_policy),  # again, with the mTLS caller
        schema_check.layer(rt.schemas),  # zero trust: check again what the caller checked
        result_contract.layer(rt.schemas),  # the agent's result matches its output schema
        deadline.layer(rt.clock),  # the caller's wait ends with its deadline; a keyed delivery goes on
        # a key runs once; its run stays within reach of kill switches after its caller left
        idempotency.layer(
            _idempotency_settings(rt),
            rt.clock,
            _agent_connection(rt),
            kill_switch.inbound_runs(rt.controls, rt.local, rt.policy),
        ),
    ]


def model_route_layers(rt: Runtime) -> list[Layer]:
    """How a model call finds its provider, within the outer stages (whose policy stage decides
    a model call with Cedar's CallModel, at its worst-case cost)."""
    return [
        model_routing.layer(rt.policy, rt.controls),  # the model and its fallbacks, less killed ones
        deadline.layer(rt.clock),  # the whole call, fallbacks and stream included
    ]


def _catalog(rt: Runtime) -> ModelCatalog:
    active = rt.policy.active
    return active.models if active is not None else EMPTY_CATALOG


def _kind_of(rt: Runtime) -> tracing.KindOf:
    def kind_of(capability: str) -> str:
        active = rt.policy.active
        if active is None:
            return ""
        return active.capability_kind(capability) or ("tool" if active.mcp_servers.tool(capability) else "")

    return kind_of


def _known(rt: Runtime) -> metrics.Known:
    """Names that may be metric labels: capabilities the catalog has seen, models in the bundle's
    models.json, MCP tools its mcp_servers.toml declares."""

    def known(name: str) -> bool:
        if rt.catalog.has_seen(name) or name in _catalog(rt).models:
            return True
        active = rt.policy.active
        return active is not None and active.mcp_servers.tool(name) is not None

    return known


def _serves(rt: Runtime) -> metrics.Known:
    def serves(capability: str) -> bool:
        registration = rt.local.registration
        return registration is not None and capability in registration.capabilities

    return serves


def _idempotency_settings(rt: Runtime) -> idempotency.IdempotencySettings:
    return idempotency.IdempotencySettings(
        ttl_s=rt.config.idempotency_ttl_s, run_limit_s=rt.config.idempotency_run_limit_s
    )


def _agent_connection(rt: Runtime) -> idempotency.AgentConnection:
    """The state of the channel to the agent now (it changes when the agent registers anew)."""
    return lambda: rt.agent_app.channel.get_state(try_to_connect=False)


def _retry_settings(rt: Runtime) -> retries.RetrySettings:
    return retries.RetrySettings(max_attempts=rt.config.retry_max_attempts, budget_ratio=rt.config.retry_budget_ratio)


def outbound(rt: Runtime) -> Handler:
    """Calls to other agents' capabilities (kind "agent")."""
    return of_kind(
        rt, agent_route_layers(rt), peer.Send(rt.peer_channels, rt.clock), admission=agent_admission_layers(rt)
    )


def tool(rt: Runtime) -> Handler:
    """MCP tool calls (kind "tool", from the gateway's /mcp endpoint)."""
    return of_kind(
        rt,
        tool_route_layers(rt),
        mcp_server.ToMcpServer(rt.mcp_upstreams, rt.policy, rt.clock),
        admission=tool_admission_layers(rt),
    )


def inbound(rt: Runtime) -> Handler:
    return compose(inbound_layers(rt), innermost=deliver.ToAgent(rt.agent_app, rt.local, rt.clock, rt.own_health))


def model(rt: Runtime) -> Handler:
    """Calls through the model gateway (kind "model"): the provider is the last hop."""
    send = provider.Send(rt.upstream, rt.credentials, rt.provider_breakers, lambda: _catalog(rt), rt.clock.monotonic)
    return of_kind(
        rt, model_route_layers(rt), send, downgrade=cheaper_fallback(rt.policy)
    )  # a short budget: a cheaper model
