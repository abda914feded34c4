"""The wire formats: reading requests, writing what the provider gets, and measuring usage in
whole answers and streams (the provider's own usage, or what streamed when it never came)."""

from __future__ import annotations

import json

import pytest

from meshwarden.sidecar.model_call import ModelApi
from meshwarden.sidecar.model_wire import BadModelRequest, SseSplitter, anthropic, event_data, openai


def sse(*events: object, name: str = "") -> bytes:
    prefix = f"event: {name}\n" if name else ""
    return b"".join(f"{prefix}data: {json.dumps(e) if not isinstance(e, str) else e}\n\n".encode() for e in events)


def test_the_splitter_keeps_a_partial_event_until_the_rest_arrives() -> None:
    splitter = SseSplitter()
    assert splitter.feed(b'data: {"a":1}\r\n\r\ndata: {"b"') == [b'data: {"a":1}\n\n']
    assert splitter.feed(b":2}\n\n") == [b'data: {"b":2}\n\n']
    assert event_data(b"event: ping\ndata: x\ndata: y\n\n") == b"x\ny"


def test_chat_requests_get_the_cap_and_ask_for_usage_in_streams() -> None:
    body = {"model": "gpt-test", "messages": [], "stream": True, "max_tokens": 9999}
    facts = openai.read_request(ModelApi.OPENAI_CHAT, body)
    assert (facts.model, facts.stream, facts.max_output_tokens) == ("gpt-test", True, 9999)
    sent = json.loads(openai.upstream_body(ModelApi.OPENAI_CHAT, body, "gpt-4o-2024", 256))
    assert sent["model"] == "gpt-4o-2024" and sent["max_tokens"] == 256
    assert sent["stream_options"] == {"include_usage": True} and "max_completion_tokens" not in sent
    unset = json.loads(openai.upstream_body(ModelApi.OPENAI_CHAT, {"model": "m", "messages": []}, "m", 64))
    assert unset["max_completion_tokens"] == 64


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": [], "max_tokens": 0}, "max_tokens"),
    ],
)
def test_malformed_chat_requests_name_the_field(body: dict[str, object], param: str) -> None:
    with pytest.raises(BadModelRequest) as refused:
        openai.read_request(ModelApi.OPENAI_CHAT, body)
    assert refused.value.param == param


def test_a_chat_stream_is_measured_from_its_usage_chunk_which_only_an_asking_client_sees() -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}}
    events = [
        {"model": "gpt-x", "choices": [{"delta": {"content": "Hello"}}]},
        {"model": "gpt-x", "choices": [], "usage": usage},
    ]
    quiet, asking = openai.ChatStreamMeter(False), openai.ChatStreamMeter(True)
    assert [quiet.observe(json.dumps(e).encode()) for e in events] == [True, False]
    assert [asking.observe(json.dumps(e).encode()) for e in events] == [True, True]
    measured = quiet.measured(estimated_input_tokens=999)
    assert (measured.input_tokens, measured.output_tokens, measured.cached_input_tokens) == (12, 3, 4)
    assert measured.model == "gpt-x" and measured.complete


def test_a_cut_stream_charges_the_estimate_and_what_streamed() -> None:
    meter = openai.ChatStreamMeter(False)
    for text in ("Hello", " there, ", 'a \\"quote\\"'):
        meter.observe(json.dumps({"choices": [{"delta": {"content": text}}]}).encode())
    measured = meter.measured(estimated_input_tokens=50)
    assert (measured.input_tokens, measured.output_tokens, measured.complete) == (50, 6, False)


def test_responses_and_anthropic_streams_are_measured() -> None:
    responses = openai.ResponsesStreamMeter()
    completed = {
        "type": "response.completed",
        "response": {"model": "gpt-r", "usage": {"input_tokens": 7, "output_tokens": 2}},
    }
    for event in ({"type": "response.output_text.delta", "delta": "Hi"}, completed):
        responses.observe(json.dumps(event).encode())
    assert (responses.measured(0).input_tokens, responses.measured(0).output_tokens) == (7, 2)

    claude = anthropic.MessagesStreamMeter()
    start = {
        "type": "message_start",
        "message": {
            "model": "claude-x",
            "usage": {"input_tokens": 5, "cache_read_input_tokens": 10, "output_tokens": 1},
        },
    }
    delta = {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hello there"}}
    for event in (start, delta, {"type": "message_delta", "usage": {"output_tokens": 4}}, {"type": "message_stop"}):
        claude.observe(json.dumps(event).encode())
    measured = claude.measured(0)
    assert (measured.input_tokens, measured.cached_input_tokens, measured.output_tokens) == (15, 10, 4)
    cut = anthropic.MessagesStreamMeter()
    for event in (start, delta):
        cut.observe(json.dumps(event).encode())
    assert (cut.measured(0).output_tokens, cut.measured(0).complete) == (3, False)


def test_errors_come_in_each_providers_shape() -> None:
    assert json.loads(openai.error_body(404, "no such model", code="unknown_model")) == {
        "error": {"message": "no such model", "type": "invalid_request_error", "param": None, "code": "unknown_model"}
    }
    assert json.loads(anthropic.error_body(429, "over budget")) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "over budget"},
    }
