"""The sidecar's OpenTelemetry TracerProvider: resource, sampler, batch export over OTLP.

Errors are always exported, whatever the sampler says. The sampler is wrapped so that a span
it would drop is still recorded (RECORD_ONLY: attributes and status are kept, the sampled
flag stays off and travels downstream as such); the export processor then passes a span to
the batch exporter when it is sampled or when it ended with status ERROR. The price is that
every call's span is built, sampled or not (measured in benchmarks/README.md); the gain is
that a failed call is never missing from the collector. An exported error span whose
ancestors were not sampled arrives without them; a collector's tail sampling is the tool for
keeping whole traces of failures.

Export happens on the BatchSpanProcessor's own thread: ending a span only appends it to a
bounded queue (OTEL_BSP_MAX_QUEUE_SIZE; when full, spans are dropped, never waited for), so
a slow or absent collector never holds a call up.

The provider is this sidecar's own (passed in the Runtime), never the global one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, StatusCode, TraceFlags, Tracer
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from meshwarden.sidecar.tracing_settings import TracingSettings

log = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "meshwarden.sidecar"


class RecordUnsampled(Sampler):
    """Asks `inner` and turns its DROP into RECORD_ONLY, so an unsampled span can still be
    exported if it ends in error."""

    def __init__(self, inner: Sampler) -> None:
        self._inner = inner

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self._inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        if result.decision is Decision.DROP:
            # A dropping result carries no attributes; the recorded span keeps the caller's.
            return SamplingResult(Decision.RECORD_ONLY, attributes, result.trace_state)
        return result

    def get_description(self) -> str:
        return f"RecordUnsampled{{{self._inner.get_description()}}}"


class ExportSampledOrFailed(SpanProcessor):
    """Hands `export` the spans that were sampled or ended with status ERROR."""

    def __init__(self, export: SpanProcessor) -> None:
        self._export = export

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:
            return
        if context.trace_flags.sampled:
            self._export.on_end(span)
        elif span.status.status_code is StatusCode.ERROR:
            self._export.on_end(_marked_sampled(span, context))

    def shutdown(self) -> None:
        self._export.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._export.force_flush(timeout_millis)


def _marked_sampled(span: ReadableSpan, context: SpanContext) -> ReadableSpan:
    """A copy of `span` flagged sampled: the batch processor exports only sampled spans."""
    sampled = SpanContext(
        context.trace_id,
        context.span_id,
        context.is_remote,
        TraceFlags(context.trace_flags | TraceFlags.SAMPLED),
        context.trace_state,
    )
    return ReadableSpan(
        name=span.name,
        context=sampled,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class SessionTraceIds(RandomIdGenerator):
    """Random ids, except that a root span started inside `rooted_at(trace_id)` gets that
    trace id: how a session's calls share one trace when no caller sent a trace context."""

    def __init__(self) -> None:
        self._forced: ContextVar[int] = ContextVar("meshwarden_session_trace_id", default=0)

    def generate_trace_id(self) -> int:
        return self._forced.get() or super().generate_trace_id()

    @contextmanager
    def rooted_at(self, trace_id: int) -> Iterator[None]:
        token = self._forced.set(trace_id)
        try:
            yield
        finally:
            self._forced.reset(token)


class SidecarTracing:
    """What the tracing stage needs: the tracer and the session trace ids; and a shutdown
    that flushes what is queued."""

    def __init__(self, provider: TracerProvider, ids: SessionTraceIds) -> None:
        self.provider, self.ids = provider, ids
        self.tracer: Tracer = provider.get_tracer(INSTRUMENTATION_NAME)

    def shutdown(self, timeout_s: float = 3.0) -> None:
        """Flushes and stops the exporter, waiting at most `timeout_s`: with the collector
        gone, the SDK would wait for its export timeout (10 s by default) and retries, and a
        sidecar being stopped should not. Spans still queued then are lost."""
        flushing = threading.Thread(target=self.provider.shutdown, name="otel-shutdown", daemon=True)
        flushing.start()
        flushing.join(timeout_s)
        if flushing.is_alive():
            log.warning(
                "spans not exported within %.0f s of stopping are lost (is the collector reachable?)", timeout_s
            )


def sampler_for(settings: TracingSettings) -> Sampler:
    ratio = TraceIdRatioBased(settings.sampler_ratio)
    root: Sampler = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": ratio,
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(ratio),
    }[settings.sampler]
    return RecordUnsampled(root)


def build(
    settings: TracingSettings, *, agent: str, instance_id: str, exporter: SpanExporter | None = None
) -> SidecarTracing | None:
    """The sidecar's tracing, or None when tracing is off. `exporter` replaces the OTLP one
    (tests, benchmarks)."""
    if not settings.enabled and exporter is None:
        return None
    attributes: dict[str, str] = {"service.instance.id": instance_id, "meshwarden.agent": agent}
    if not settings.service_name:  # else the SDK's own reading of OTEL_SERVICE_NAME applies
        attributes["service.name"] = f"{agent}-sidecar"
    ids = SessionTraceIds()
    provider = TracerProvider(
        resource=Resource.create(attributes),
        sampler=sampler_for(settings),
        id_generator=ids,
        shutdown_on_exit=False,  # the sidecar shuts it down itself, bounded (SidecarTracing.shutdown)
    )
    batch = BatchSpanProcessor(exporter or _otlp_exporter(settings))
    provider.add_span_processor(ExportSampledOrFailed(batch))
    return SidecarTracing(provider, ids)


def _otlp_exporter(settings: TracingSettings) -> SpanExporter:
    if settings.protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter(endpoint=settings.endpoint)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    return GrpcExporter(endpoint=settings.endpoint)
