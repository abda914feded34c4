"""One span per call at each sidecar: CLIENT in the caller's, SERVER in the callee's.

Both ends of the Peer/Deliver hop carry the gRPC attributes (rpc.*), what the inner stages
learned (meshwarden.*, read from `call.record` once the call has ended) and the OpenTelemetry
GenAI attributes that fit: a call to a capability the bundle calls a tool is `execute_tool`,
any other is `invoke_agent`; the session is `gen_ai.conversation.id`; usage the callee
reported becomes `gen_ai.usage.*`.

The span continues the trace context the call came with (W3C traceparent from the agent or
the calling sidecar); a call without one but with a session id starts its trace under the
session's trace id (meshwarden.trace_context), so a session is one trace. The span's own
context replaces the call's for the next hop. With tracing off the stage passes the call and
its trace context through untouched.

Attributes are set once, when the call ends, and only on spans that will be exported
(sampled, or ending in error): building them is most of a span's cost in the Python SDK
(benchmarks/README.md), and an unsampled call that succeeds needs none. No sampler offered
through OTEL_TRACES_SAMPLER reads attributes, so a sampler loses nothing by it.

A CLIENT span is an error for every status but OK. A SERVER span follows the gRPC semantic
conventions: an error only for the codes that say the server failed (refusals are errors at
the caller, where the span says which stage refused).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

import grpc
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from meshwarden.sidecar.call import Call, Handler, Layer, Reply
from meshwarden.sidecar.call_end import SERVED, CallEnd, call_end_of
from meshwarden.sidecar.model_call import measured_usage
from meshwarden.trace_context import context_from_headers, session_trace_id
from meshwarden.v1 import peer_pb2

if TYPE_CHECKING:  # the OpenTelemetry SDK is imported only when tracing is on (runtime_setup)
    from meshwarden.sidecar.tracing_setup import SidecarTracing

Direction = Literal["outbound", "inbound"]
KindOf = Callable[[str], str]  # the bundle's kind of a capability ("tool", "capability" or "")

PEER_SERVICE = peer_pb2.DESCRIPTOR.services_by_name["Peer"].full_name
_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class Tracing:
    def __init__(self, next: Handler, tracing: SidecarTracing | None, direction: Direction, kind_of: KindOf) -> None:
        self._next, self._tracing, self._direction, self._kind_of = next, tracing, direction, kind_of
        self._span_kind = SpanKind.CLIENT if direction == "outbound" else SpanKind.SERVER

    async def __call__(self, call: Call) -> Reply:
        tracing = self._tracing
        if tracing is None:
            return await self._next(call)
        parent = context_from_headers(call.traceparent, call.tracestate)
        is_root = not trace.get_current_span(parent).get_span_context().is_valid
        if call.model is not None:  # GenAI conventions: "{operation} {model}", e.g. "chat gpt-4o-mini"
            operation = call.model.api.operation
        else:
            operation = "execute_tool" if self._kind_of(call.capability) == "tool" else "invoke_agent"
        rooted = tracing.ids.rooted_at(session_trace_id(call.session_id)) if is_root and call.session_id else None
        with rooted or nullcontext():
            span = tracing.tracer.start_span(f"{operation} {call.capability}", context=parent, kind=self._span_kind)
        ctx = span.get_span_context()
        traceparent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
        ended = SERVED
        reply: Reply | None = None
        try:
            reply = await self._next(replace(call, traceparent=traceparent, tracestate=ctx.trace_state.to_header()))
            return reply
        except BaseException as exc:
            ended = call_end_of(exc)
            raise
        finally:
            self._end(span, call, reply, operation, ended)

    def _end(
        self,
        span: Span,
        call: Call,
        reply: Reply | None,
        operation: str,
        ended: CallEnd,
    ) -> None:
        failed = not ended.served and (self._direction == "outbound" or ended.code in _SERVER_FAULTS)
        if span.get_span_context().trace_flags.sampled or (failed and span.is_recording()):
            attributes = _attributes(call, reply, operation, ended.code, self._direction == "inbound")
            if not ended.served:
                attributes["error.type"] = ended.kind
            span.set_attributes(attributes)
            if failed:
                span.set_status(Status(StatusCode.ERROR, ended.message))
        span.end()


def _attributes(
    call: Call, reply: Reply | None, operation: str, code: grpc.StatusCode, inbound: bool
) -> dict[str, AttributeValue]:
    """The call as it came in, what the inner stages learned (call.record) and how it ended."""
    if call.model is not None:
        return _model_attributes(call, reply, operation)
    record = call.record
    attributes: dict[str, AttributeValue] = {
        "rpc.system": "grpc",
        "rpc.service": PEER_SERVICE,
        "rpc.method": "Deliver",
        "rpc.grpc.status_code": code.value[0],
        "gen_ai.operation.name": operation,
        "meshwarden.call.id": call.call_id,
        "meshwarden.capability": call.capability,
        "meshwarden.attempt": record.attempt,
    }
    if operation == "execute_tool":
        attributes["gen_ai.tool.name"] = call.capability
    if call.session_id:
        attributes["meshwarden.session"] = call.session_id
        attributes["gen_ai.conversation.id"] = call.session_id
    if call.workflow_id:
        attributes["meshwarden.workflow"] = call.workflow_id
    if inbound:  # the caller's sidecar names its own agent in its resource (meshwarden.agent)
        attributes["meshwarden.caller.agent"] = call.caller.agent
        attributes["meshwarden.caller.spiffe_id"] = call.caller.spiffe_id
    if record.target is not None:
        attributes["gen_ai.agent.name"] = record.target.agent
        attributes["meshwarden.version"] = str(record.target.version)
        attributes["meshwarden.instance"] = record.target.instance_id
    if record.policy_decision:
        attributes["meshwarden.policy.decision"] = record.policy_decision
        attributes["meshwarden.policy.ids"] = list(record.policy_ids)
    if record.breaker_state:
        attributes["meshwarden.breaker.state"] = record.breaker_state
    if record.kill_switch_id:
        attributes["meshwarden.kill_switch.id"] = record.kill_switch_id
    usage = reply.usage if reply is not None else None
    if usage is not None:
        if usage.model:
            attributes["gen_ai.response.model"] = usage.model
        attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
        attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
        attributes["meshwarden.usage.cost_micro_usd"] = usage.cost_micro_usd
    return attributes


def _model_attributes(call: Call, reply: Reply | None, operation: str) -> dict[str, AttributeValue]:
    """A model call's span: the OpenTelemetry GenAI client attributes (gen_ai.*), with usage as
    the gateway measured it, and what the mesh decided (meshwarden.*)."""
    request, record = call.model, call.record
    assert request is not None  # the caller checked
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": operation,
        "gen_ai.request.model": call.capability,
        "gen_ai.provider.name": request.provider,
        "meshwarden.call.id": call.call_id,
        "meshwarden.call.kind": "model",
        "meshwarden.model.api": request.api.value,
        "meshwarden.model.streamed": request.stream,
        "meshwarden.model.attributed_to_agent_only": request.attributed_to_agent_only,
    }
    if request.max_output_tokens:
        attributes["gen_ai.request.max_tokens"] = request.max_output_tokens
    if call.session_id:
        attributes["meshwarden.session"] = call.session_id
        attributes["gen_ai.conversation.id"] = call.session_id
    if call.workflow_id:
        attributes["meshwarden.workflow"] = call.workflow_id
    if request.task_id:
        attributes["meshwarden.task"] = request.task_id
    if call.cost_estimate_micro_usd is not None:
        attributes["meshwarden.cost_estimate_micro_usd"] = call.cost_estimate_micro_usd
    if record.policy_decision:
        attributes["meshwarden.policy.decision"] = record.policy_decision
        attributes["meshwarden.policy.ids"] = list(record.policy_ids)
    if record.kill_switch_id:
        attributes["meshwarden.kill_switch.id"] = record.kill_switch_id
    outcome = record.model
    if outcome is not None:
        attributes["gen_ai.provider.name"] = outcome.provider or request.provider
        attributes["meshwarden.model.attempts"] = outcome.attempts
        if outcome.response_model:
            attributes["gen_ai.response.model"] = outcome.response_model
        if outcome.fallback_from:
            attributes["meshwarden.model.fallback_from"] = outcome.fallback_from
        if outcome.stream_cut:
            attributes["meshwarden.model.stream_cut"] = True
        if outcome.input_estimated or outcome.output_estimated:  # the provider's usage never came
            attributes["meshwarden.usage.input_estimated"] = outcome.input_estimated
            attributes["meshwarden.usage.output_estimated"] = outcome.output_estimated
        attributes["gen_ai.usage.cache_read.input_tokens"] = outcome.cached_input_tokens
    usage = measured_usage(reply.usage if reply is not None else None, outcome)
    if usage is not None:
        attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
        attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
        attributes["meshwarden.usage.cost_micro_usd"] = usage.cost_micro_usd
    return attributes


def layer(tracing: SidecarTracing | None, direction: Direction, kind_of: KindOf) -> Layer:
    return lambda next: Tracing(next, tracing, direction, kind_of)
