"""The order of the stages, in the order a call travels. This is the only place it is set;
tests/unit/sidecar/test_pipeline.py checks it against the order README.md documents.

Every kind of call the agent makes (to another agent's capability, to an MCP tool) passes the
same outer stages (`_outer_layers`), then the routing and last hop of its kind."""

from __future__ import annotations

from collections.abc import Sequence

from meshwarden.sidecar.call import Handler, Layer, compose
from meshwarden.sidecar.hops import mcp_server
from meshwarden.sidecar.runtime import Runtime
from meshwarden.sidecar.stages import (
    breaker,
    deadline,
    deliver,
    idempotency,
    inbound_policy,
    kill_switch,
    metrics,
    outbound_policy,
    payload_limit,
    peer,
    peer_identity,
    receipts,
    result_contract,
    retries,
    routing,
    schema_check,
    target_check,
    tool_breaker,
    tool_check,
    tracing,
)


def _outer_layers(
    rt: Runtime, kind_of: tracing.KindOf, known: metrics.Known, admission: Sequence[Layer] = ()
) -> list[Layer]:
    """The stages every call the local agent makes passes, whatever its kind, outermost first.
    `admission` holds the kind's own checks that must pass before policy decides."""
    return [
        tracing.layer(rt.tracing, "outbound", kind_of),  # a CLIENT span, continuing the agent's trace
        metrics.layer(rt.metrics, "outbound", known, rt.clock),  # counted and timed once it ends
        receipts.layer("outbound", rt.receipts, rt.policy, rt.local, rt.clock),  # every call, however it ends
        # an operator's stop, before anything else is spent on the call; steers away from killed callees
        kill_switch.outbound(rt.controls, rt.local, rt.policy, rt.catalog),
        payload_limit.layer(rt.config.max_payload_bytes),  # cheapest refusal first
        *admission,
        outbound_policy.layer(rt.policy, rt.clock, rt.config.allow_without_policy),  # may it call this? (Cedar)
        # budget (reserve before, settle after) and approval (a person's yes for risky calls, bound to
        # call.record.tool.arguments_sha256) go here: after policy, before anything is spent upstream
    ]


def outbound_layers(rt: Runtime) -> list[Layer]:
    return [  # outermost first
        *_outer_layers(rt, _kind_of(rt), rt.catalog.has_seen),
        retries.layer(_retry_settings(rt), rt.clock, rt.rng),  # safe retries only, each re-routed
        routing.layer(
            rt.catalog, rt.rng, rt.breakers, rt.routes, rt.sessions, rt.latency
        ),  # a live instance of the right version and schema, the faster and less loaded of two
        breaker.layer(rt.breakers),  # fail fast on an instance that keeps failing
        schema_check.layer(rt.schemas),  # a bad call never leaves
        deadline.layer(rt.clock),  # the call ends when the caller's deadline does
    ]


def tool_layers(rt: Runtime) -> list[Layer]:
    """MCP tool calls (the gateway's /mcp endpoint): the outer stages, then the MCP server."""
    return [
        *_outer_layers(
            rt,
            lambda _: "tool",
            _declares_tool(rt),
            admission=(
                tool_breaker.layer(rt.tool_breakers),  # fail fast on a server that keeps failing
                tool_check.layer(rt.policy, rt.mcp_upstreams, rt.clock),  # declared? schema drift? valid arguments?
            ),
        ),
        deadline.layer(rt.clock),
    ]


def inbound_layers(rt: Runtime) -> list[Layer]:
    return [
        tracing.layer(rt.tracing, "inbound", _kind_of(rt)),  # a SERVER span, continuing the caller's trace
        metrics.layer(rt.metrics, "inbound", _serves(rt), rt.clock),
        receipts.layer("inbound", rt.receipts, rt.policy, rt.local, rt.clock),
        peer_identity.layer(),  # the caller is its certificate's SPIFFE ID, whatever it claims
        kill_switch.inbound(rt.controls, rt.local, rt.policy),  # an operator's stop, matched on the mTLS caller too
        target_check.layer(rt.local),  # for this instance and a capability it serves?
        payload_limit.layer(rt.config.max_payload_bytes),
        inbound_policy.layer(rt.policy, rt.clock, rt.config.allow_without_policy),  # again, with the mTLS caller
        schema_check.layer(rt.schemas),  # zero trust: check again what the caller checked
        result_contract.layer(rt.schemas),  # the agent's result matches its output schema
        deadline.layer(rt.clock),
        idempotency.layer(rt.config.idempotency_ttl_s, rt.clock),  # a key runs once; repeats get its result
    ]


def _kind_of(rt: Runtime) -> tracing.KindOf:
    def kind_of(capability: str) -> str:
        active = rt.policy.active
        return active.capability_kind(capability) if active is not None else ""

    return kind_of


def _declares_tool(rt: Runtime) -> metrics.Known:
    def declares(tool: str) -> bool:
        active = rt.policy.active
        return active is not None and active.mcp_servers.tool(tool) is not None

    return declares


def _serves(rt: Runtime) -> metrics.Known:
    def serves(capability: str) -> bool:
        registration = rt.local.registration
        return registration is not None and capability in registration.capabilities

    return serves


def _retry_settings(rt: Runtime) -> retries.RetrySettings:
    return retries.RetrySettings(max_attempts=rt.config.retry_max_attempts, budget_ratio=rt.config.retry_budget_ratio)


def outbound(rt: Runtime) -> Handler:
    return compose(outbound_layers(rt), innermost=peer.Send(rt.peer_channels, rt.clock))


def tool(rt: Runtime) -> Handler:
    return compose(tool_layers(rt), innermost=mcp_server.ToMcpServer(rt.mcp_upstreams, rt.policy, rt.clock))


def inbound(rt: Runtime) -> Handler:
    return compose(inbound_layers(rt), innermost=deliver.ToAgent(rt.agent_app, rt.local, rt.clock))
