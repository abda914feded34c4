"""The order of the stages, in the order a call travels. This is the only place it is set;
tests/unit/sidecar/test_pipeline.py checks it against the order README.md documents.

Every call the local agent makes passes the same outer stages (`outer_layers`), whatever its
kind; then the kind's own routing and last hop (`of_kind`): `outbound` for calls to other
agents, and likewise a function per kind for model and tool calls. Calls from other agents'
sidecars (`inbound`) are of kind "agent" only."""

from __future__ import annotations

from collections.abc import Sequence

from meshwarden.policy_bundle.model_catalog import EMPTY as EMPTY_CATALOG
from meshwarden.policy_bundle.model_catalog import ModelCatalog
from meshwarden.sidecar.call import Handler, Layer, compose
from meshwarden.sidecar.hops import provider
from meshwarden.sidecar.runtime import Runtime
from meshwarden.sidecar.stages import (
    approval,
    breaker,
    deadline,
    deliver,
    idempotency,
    inbound_policy,
    kill_switch,
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
    target_check,
    task_fence,
    tracing,
)


def outer_layers(rt: Runtime) -> list[Layer]:
    """The stages every call this sidecar's agent makes passes, whatever its kind (agent,
    model, tool), written once: a receipt, a span, a metric, a kill switch and a policy
    decision and an approval work the same way for all. The budget stage goes here too."""
    return [  # outermost first
        tracing.layer(rt.tracing, "outbound", _kind_of(rt)),  # a CLIENT span, continuing the agent's trace
        metrics.layer(rt.metrics, "outbound", _known(rt), rt.clock),  # counted and timed once it ends
        receipts.layer("outbound", rt.receipts, rt.policy, rt.local, rt.clock),  # every call, however it ends
        # an operator's stop, before anything else is spent on the call; steers away from killed callees
        kill_switch.outbound(rt.controls, rt.local, rt.policy, rt.catalog),
        task_fence.layer(rt.fences),  # a call under a task's stale fencing token never leaves
        payload_limit.layer(rt.config.max_payload_bytes),  # cheapest refusal first
        outbound_policy.layer(rt.policy, rt.clock, rt.config.allow_without_policy),  # may it call this? (Cedar)
        approval.layer(rt.approvals, rt.policy, rt.clock),  # a person's yes first, when policy asks for one
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


def outbound_layers(rt: Runtime) -> list[Layer]:
    return [*outer_layers(rt), *agent_route_layers(rt)]


def of_kind(rt: Runtime, route: Sequence[Layer], last_hop: Handler) -> Handler:
    """The pipeline for one kind of call: the outer stages, then the kind's own routing, then
    its last hop (the peer sidecar, a model provider, an MCP server)."""
    return compose([*outer_layers(rt), *route], innermost=last_hop)


def inbound_layers(rt: Runtime) -> list[Layer]:
    return [
        tracing.layer(rt.tracing, "inbound", _kind_of(rt)),  # a SERVER span, continuing the caller's trace
        metrics.layer(rt.metrics, "inbound", _serves(rt), rt.clock),
        receipts.layer("inbound", rt.receipts, rt.policy, rt.local, rt.clock),
        peer_identity.layer(),  # the caller is its certificate's SPIFFE ID, whatever it claims
        kill_switch.inbound(rt.controls, rt.local, rt.policy),  # an operator's stop, matched on the mTLS caller too
        task_fence.layer(rt.fences),  # the task token checked again: a stale one is never delivered
        target_check.layer(rt.local),  # for this instance and a capability it serves?
        payload_limit.layer(rt.config.max_payload_bytes),
        inbound_policy.layer(rt.policy, rt.clock, rt.config.allow_without_policy),  # again, with the mTLS caller
        schema_check.layer(rt.schemas),  # zero trust: check again what the caller checked
        result_contract.layer(rt.schemas),  # the agent's result matches its output schema
        deadline.layer(rt.clock),
        idempotency.layer(rt.config.idempotency_ttl_s, rt.clock),  # a key runs once; repeats get its result
    ]


def model_route_layers(rt: Runtime) -> list[Layer]:
    """How a model call finds its provider, within the outer stages (whose policy stage decides
    a model call with Cedar's CallModel, at its worst-case cost)."""
    return [
        # (budget: reserve Call.cost_estimate_micro_usd in the outer stages, settle on Reply.usage)
        model_routing.layer(rt.policy, rt.controls),  # the model and its fallbacks, less killed ones
        deadline.layer(rt.clock),  # the whole call, fallbacks and stream included
    ]


def _catalog(rt: Runtime) -> ModelCatalog:
    active = rt.policy.active
    return active.models if active is not None else EMPTY_CATALOG


def _known(rt: Runtime) -> metrics.Known:
    """Capabilities in the catalog and models in the bundle's models.json may be label values."""
    return lambda name: rt.catalog.has_seen(name) or name in _catalog(rt).models


def _kind_of(rt: Runtime) -> tracing.KindOf:
    def kind_of(capability: str) -> str:
        active = rt.policy.active
        return active.capability_kind(capability) if active is not None else ""

    return kind_of


def _serves(rt: Runtime) -> metrics.Known:
    def serves(capability: str) -> bool:
        registration = rt.local.registration
        return registration is not None and capability in registration.capabilities

    return serves


def _retry_settings(rt: Runtime) -> retries.RetrySettings:
    return retries.RetrySettings(max_attempts=rt.config.retry_max_attempts, budget_ratio=rt.config.retry_budget_ratio)


def outbound(rt: Runtime) -> Handler:
    """Calls to other agents' capabilities (kind "agent")."""
    return of_kind(rt, agent_route_layers(rt), peer.Send(rt.peer_channels, rt.clock))


def inbound(rt: Runtime) -> Handler:
    return compose(inbound_layers(rt), innermost=deliver.ToAgent(rt.agent_app, rt.local, rt.clock))


def model(rt: Runtime) -> Handler:
    """Calls through the model gateway (kind "model"): the provider is the last hop."""
    send = provider.Send(rt.upstream, rt.credentials, rt.provider_breakers, lambda: _catalog(rt), rt.clock.monotonic)
    return of_kind(rt, model_route_layers(rt), send)
