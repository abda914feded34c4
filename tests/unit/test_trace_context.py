"""W3C trace context in gRPC metadata, with opentelemetry-api only (no SDK configured)."""

from __future__ import annotations

import asyncio

from opentelemetry import trace

from meshwarden.trace_context import (
    attach_headers,
    detach,
    headers_from_metadata,
    outgoing_metadata,
    session_trace_id,
    trace_and_span_ids,
)

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_an_attached_context_is_what_outgoing_calls_carry() -> None:
    assert outgoing_metadata() == ()  # nothing current: nothing sent
    token = attach_headers(PARENT, "vendor=1")
    try:
        assert dict(outgoing_metadata()) == {"traceparent": PARENT, "tracestate": "vendor=1"}
        assert trace.get_current_span().get_span_context().trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    finally:
        detach(token)
    assert outgoing_metadata() == ()


def test_malformed_headers_start_no_trace() -> None:
    token = attach_headers("00-not-a-trace-01")
    try:
        assert outgoing_metadata() == ()
    finally:
        detach(token)


def test_headers_are_read_from_metadata() -> None:
    assert headers_from_metadata((("authorization", "x"), ("traceparent", PARENT))) == (PARENT, "")
    assert headers_from_metadata(None) == ("", "")


def test_a_session_has_one_stable_trace_id() -> None:
    assert session_trace_id("s-1") == session_trace_id("s-1") != session_trace_id("s-2")
    assert 0 < session_trace_id("s-1") < 2**128


async def test_a_plain_def_handler_in_a_worker_thread_sees_the_same_context() -> None:
    token = attach_headers(PARENT)
    try:  # asyncio.to_thread copies the context, as the SDK runs plain-def handlers
        assert dict(await asyncio.to_thread(outgoing_metadata)) == {"traceparent": PARENT}
    finally:
        detach(token)


def test_trace_and_span_ids_of_a_traceparent() -> None:
    assert trace_and_span_ids(PARENT) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    for bad in ("", "00-xyz-b7ad6b7169203331-01", f"00-{'0' * 32}-b7ad6b7169203331-01", "00-abc-def"):
        assert trace_and_span_ids(bad) == ("", "")
