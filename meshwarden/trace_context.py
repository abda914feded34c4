"""W3C trace context (`traceparent`, `tracestate`) carried in gRPC metadata, end to end.

The SDK's client sends the current trace context with every Invoke; the sidecars continue it
and pass it on; the SDK's agent makes the context it is handed current while a handler runs,
so the handler's own calls continue the same trace. All of it needs only opentelemetry-api:
an agent propagates the trace without configuring any OpenTelemetry SDK (without one, the
current span is the caller's context, carried as is).

One trace per session: a call that arrives at a sidecar with a session id and no trace
context starts its trace under `session_trace_id(session_id)`, so every call of a session
lands in one trace even when agents propagate nothing, and an operator can compute the
trace id from the session id alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from contextvars import Token

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_PROPAGATOR = TraceContextTextMapPropagator()


def outgoing_metadata(ctx: Context | None = None) -> tuple[tuple[str, str], ...]:
    """The trace context of `ctx` (default: the current one) as gRPC metadata; empty when
    there is no valid span context to continue."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=ctx)
    return tuple((key, carrier[key]) for key in (TRACEPARENT, TRACESTATE) if carrier.get(key))


def headers_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> tuple[str, str]:
    """(traceparent, tracestate) as received in gRPC metadata, "" for each one missing."""
    parent = state = ""
    for key, value in metadata or ():
        if key == TRACEPARENT and isinstance(value, str):
            parent = value
        elif key == TRACESTATE and isinstance(value, str):
            state = value
    return parent, state


def metadata_for(traceparent: str, tracestate: str) -> tuple[tuple[str, str], ...]:
    """Headers as received (or as a span made them) as gRPC metadata for the next hop."""
    if not traceparent:
        return ()
    if tracestate:
        return ((TRACEPARENT, traceparent), (TRACESTATE, tracestate))
    return ((TRACEPARENT, traceparent),)


def context_from_headers(traceparent: str, tracestate: str = "") -> Context:
    """A Context whose current span is the remote parent these headers name; an empty
    Context (a new trace) when they are missing or malformed."""
    carrier: Mapping[str, str] = {TRACEPARENT: traceparent, TRACESTATE: tracestate} if traceparent else {}
    return _PROPAGATOR.extract(carrier, context=Context())


def attach_headers(traceparent: str, tracestate: str = "") -> Token[Context]:
    """Makes the headers' context current (for the duration of a handler); pass the returned
    token to `detach`."""
    return otel_context.attach(context_from_headers(traceparent, tracestate))


def detach(token: Token[Context]) -> None:
    otel_context.detach(token)


def trace_and_span_ids(traceparent: str) -> tuple[str, str]:
    """(trace id, span id) in hex from a W3C traceparent; ("", "") when it is missing or malformed."""
    parts = traceparent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return "", ""
    trace_id, span_id = parts[1].lower(), parts[2].lower()
    try:
        if not int(trace_id, 16) or not int(span_id, 16):
            return "", ""
    except ValueError:
        return "", ""
    return trace_id, span_id


def session_trace_id(session_id: str) -> int:
    """The trace id of a session: the first 16 bytes of SHA-256 over the session id."""
    digest = hashlib.sha256(b"meshwarden-session\n" + session_id.encode()).digest()
    return int.from_bytes(digest[:16], "big") or 1


def format_trace_id(trace_id: int) -> str:
    return f"{trace_id:032x}"
