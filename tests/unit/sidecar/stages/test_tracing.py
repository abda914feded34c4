"""The tracing stage: span kinds, parents, attributes from the call's record, the trace
context handed to the next hop, sessions as traces, and failed calls exported unsampled."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from meshwarden.errors import AgentFailed, PolicyDenied
from meshwarden.sidecar import tracing_setup
from meshwarden.sidecar.call import Call, Reply
from meshwarden.sidecar.model_call import ModelApi, ModelOutcome, ModelRequest
from meshwarden.sidecar.stages import tracing
from meshwarden.sidecar.tracing_settings import TracingSettings
from meshwarden.trace_context import session_trace_id
from meshwarden.usage import Usage
from tests.unit.sidecar.fakes import call

ON = TracingSettings(enabled=True)
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def traced(
    settings: TracingSettings = ON,
) -> tuple[InMemorySpanExporter, tracing_setup.SidecarTracing]:
    exporter = InMemorySpanExporter()
    built = tracing_setup.build(settings, agent="frontdesk", instance_id="frontdesk-1", exporter=exporter)
    assert built is not None
    return exporter, built


def finished(exporter: InMemorySpanExporter, built: tracing_setup.SidecarTracing) -> list[ReadableSpan]:
    built.provider.force_flush()
    return list(exporter.get_finished_spans())


class Inner:
    """Answers like a callee; records the call it got and fills the record as stages would."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.got: Call | None = None

    async def __call__(self, c: Call) -> Reply:
        self.got = c
        c.record.policy_decision, c.record.policy_ids = "allow", ("p1",)
        c.record.attempt, c.record.breaker_state = 2, "closed"
        if self.error is not None:
            raise self.error
        usage = Usage(model="m-1", input_tokens=10, output_tokens=5, cost_micro_usd=700)
        return Reply(b'{"ok":true}', "billing-1", "billing", "2.0.0", usage)


async def test_a_client_span_continues_the_agents_trace_and_hands_its_own_context_on() -> None:
    exporter, built = traced()
    inner = Inner()
    stage = tracing.Tracing(inner, built, "outbound", lambda capability: "tool")
    await stage(call(traceparent=PARENT, session_id="s-1", workflow_id="w-1"))
    (span,) = finished(exporter, built)
    assert span.kind is SpanKind.CLIENT and span.name == "execute_tool billing.refund"
    assert span.parent is not None and span.parent.span_id == 0xB7AD6B7169203331
    assert span.context is not None and span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert inner.got is not None
    assert inner.got.traceparent == f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-01"
    attrs = span.attributes or {}
    assert attrs["gen_ai.operation.name"] == "execute_tool" and attrs["gen_ai.tool.name"] == "billing.refund"
    assert attrs["gen_ai.conversation.id"] == "s-1" and attrs["meshwarden.workflow"] == "w-1"
    assert attrs["meshwarden.policy.decision"] == "allow" and attrs["meshwarden.policy.ids"] == ("p1",)
    assert attrs["meshwarden.attempt"] == 2 and attrs["meshwarden.breaker.state"] == "closed"
    assert attrs["gen_ai.usage.input_tokens"] == 10 and attrs["gen_ai.response.model"] == "m-1"
    assert attrs["rpc.grpc.status_code"] == 0
    assert span.status.status_code is StatusCode.UNSET


async def test_a_call_without_trace_context_starts_its_sessions_trace() -> None:
    exporter, built = traced()
    stage = tracing.Tracing(Inner(), built, "outbound", lambda capability: "")
    await stage(call(session_id="s-42"))
    await stage(call(session_id="s-42"))
    spans = finished(exporter, built)
    assert [s.context.trace_id for s in spans if s.context] == [session_trace_id("s-42")] * 2
    assert all(s.parent is None and s.name == "invoke_agent billing.refund" for s in spans)


async def test_a_refusal_is_an_error_at_the_caller_but_not_at_the_callee() -> None:
    exporter, built = traced()
    denied = PolicyDenied("caller may not call billing.refund")
    for direction in ("outbound", "inbound"):
        stage = tracing.Tracing(Inner(denied), built, direction, lambda capability: "")  # type: ignore[arg-type]
        with pytest.raises(PolicyDenied):
            await stage(call())
    client, server = finished(exporter, built)
    assert client.kind is SpanKind.CLIENT and client.status.status_code is StatusCode.ERROR
    assert server.kind is SpanKind.SERVER and server.status.status_code is StatusCode.UNSET
    assert (client.attributes or {})["error.type"] == "policy_denied"
    assert (client.attributes or {})["rpc.grpc.status_code"] == 7


async def test_with_nothing_sampled_only_failed_calls_are_exported() -> None:
    exporter, built = traced(TracingSettings(enabled=True, sampler="parentbased_traceidratio", sampler_ratio=0.0))
    failing = tracing.Tracing(
        Inner(AgentFailed(grpc.StatusCode.INTERNAL, "agent billing failed")), built, "inbound", lambda c: ""
    )
    ok = tracing.Tracing(Inner(), built, "inbound", lambda c: "")
    await ok(call(traceparent=UNSAMPLED_PARENT))
    with pytest.raises(AgentFailed):
        await failing(call(traceparent=UNSAMPLED_PARENT))
    (span,) = finished(exporter, built)
    assert span.status.status_code is StatusCode.ERROR and (span.attributes or {})["error.type"] == "agent_failed"
    assert (span.attributes or {})["meshwarden.capability"] == "billing.refund"  # attributes survive RECORD_ONLY


async def test_with_tracing_off_the_trace_context_passes_through_untouched() -> None:
    inner = Inner()
    await tracing.Tracing(inner, None, "outbound", lambda c: "")(call(traceparent=PARENT, tracestate="k=v"))
    assert inner.got is not None and (inner.got.traceparent, inner.got.tracestate) == (PARENT, "k=v")


async def test_a_model_call_has_the_genai_client_attributes() -> None:
    exporter, built = traced()

    async def provider(c: Call) -> Reply:  # as the provider hop fills the record
        c.record.model = ModelOutcome(provider="openai", response_model="gpt-4o-mini-2024-07-18", attempts=2)
        c.record.model.fallback_from = "azure/gpt-4o-mini"
        usage = Usage(model="gpt-4o-mini-2024-07-18", input_tokens=12, output_tokens=7, cost_micro_usd=6)
        return Reply(b"{}", "", "openai", "gpt-4o-mini-2024-07-18", usage)

    request = ModelRequest(
        api=ModelApi.OPENAI_CHAT,
        body={},
        stream=False,
        estimated_input_tokens=40,
        max_output_tokens=64,
        provider="azure",
    )
    stage = tracing.Tracing(provider, built, "outbound", lambda capability: "")
    await stage(call("gpt-4o-mini", kind="model", model=request, session_id="s-1"))
    (span,) = finished(exporter, built)
    attrs = span.attributes or {}
    assert span.name == "chat gpt-4o-mini" and span.kind is SpanKind.CLIENT
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18" and attrs["gen_ai.provider.name"] == "openai"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (12, 7)
    assert attrs["gen_ai.request.max_tokens"] == 64 and attrs["meshwarden.model.fallback_from"] == "azure/gpt-4o-mini"
    assert "rpc.system" not in attrs
