"""The wire formats: reading requests, writing what the provider gets, and measuring usage in
whole answers and streams (the provider's own usage, or what streamed when it never came)."""

from __future__ import annotations

import json

import pytest

from meshwarden.sidecar.model_call import ModelApi
from meshwarden.sidecar.model_wire import BadModelRequest, SseSplitter, anthropic, event_data, openai
from meshwarden.sidecar.model_wire.prompt_estimate import estimated_prompt_tokens


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
    measured = quiet.measured()
    assert (measured.input_tokens, measured.output_tokens, measured.cached_input_tokens) == (12, 3, 4)
    assert measured.model == "gpt-x" and measured.complete


def test_a_cut_stream_counts_what_streamed_and_leaves_the_input_to_estimate() -> None:
    meter = openai.ChatStreamMeter(False)
    for text in ("Hello", " there, ", 'a \\"quote\\"', ""):
        meter.observe(json.dumps({"choices": [{"delta": {"content": text}}]}).encode())
    measured = meter.measured()
    assert (measured.output_tokens, measured.complete) == (6, False)  # 22 bytes of text: 6 tokens
    assert measured.input_estimated and measured.output_estimated and measured.input_tokens == 0
    chunky = openai.ChatStreamMeter(False)  # one token per chunk, as OpenAI streams: each delta counts
    for text in ("a", "b", "c", "d", "e"):
        chunky.observe(json.dumps({"choices": [{"delta": {"content": text}}]}).encode())
    assert chunky.measured().output_tokens == 5  # 5 bytes would be 2 tokens; 5 deltas are at least 5
    call = {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Paris, France"}'}}]}
    chunky.observe(json.dumps({"choices": [{"delta": call}]}).encode())
    assert chunky.measured().output_tokens == 8  # a tool call's arguments count: 30 bytes in all


def test_the_input_of_a_cut_stream_is_estimated_from_the_text_the_model_reads() -> None:
    words = "one two three four five six seven eight"  # 39 bytes: 10 tokens
    chat = {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": words}]}
    assert estimated_prompt_tokens(ModelApi.OPENAI_CHAT, chat) == 10 + 3 + 3  # one message, primed reply
    padded = {**chat, "temperature": 0.2, "metadata": {"k" * 400: "v" * 400}, "user": "u" * 400}
    assert estimated_prompt_tokens(ModelApi.OPENAI_CHAT, padded) == 16  # parameters are not prompt
    parts = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": words}, {"type": "image_url", "image_url": {"url": "data:x"}}],
            }
        ]
    }
    assert estimated_prompt_tokens(ModelApi.OPENAI_CHAT, parts) == 10 + 85 + 6
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    assert estimated_prompt_tokens(ModelApi.OPENAI_CHAT, {**chat, "tools": tools}) > 16
    assert estimated_prompt_tokens(ModelApi.OPENAI_RESPONSES, {"input": words, "instructions": "be brief"}) == 12 + 6
    claude = {"system": "be brief", "messages": [{"role": "user", "content": words}]}
    assert estimated_prompt_tokens(ModelApi.ANTHROPIC_MESSAGES, claude) == 12 + 6
    deep: object = "x"
    for _ in range(1000):  # never recurses without bound
        deep = [deep]
    assert estimated_prompt_tokens(ModelApi.OPENAI_CHAT, {"messages": deep}) == 6


def test_responses_and_anthropic_streams_are_measured() -> None:
    responses = openai.ResponsesStreamMeter()
    completed = {
        "type": "response.completed",
        "response": {"model": "gpt-r", "usage": {"input_tokens": 7, "output_tokens": 2}},
    }
    for event in ({"type": "response.output_text.delta", "delta": "Hi"}, completed):
        responses.observe(json.dumps(event).encode())
    assert (responses.measured().input_tokens, responses.measured().output_tokens) == (7, 2)

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
    measured = claude.measured()
    assert (measured.input_tokens, measured.cached_input_tokens, measured.output_tokens) == (15, 10, 4)
    cut = anthropic.MessagesStreamMeter()
    for event in (start, delta):
        cut.observe(json.dumps(event).encode())
    assert (cut.measured().output_tokens, cut.measured().complete) == (3, False)
    assert not cut.measured().input_estimated and cut.measured().output_estimated  # input from message_start


def test_errors_come_in_each_providers_shape() -> None:
    assert json.loads(openai.error_body(404, "no such model", code="unknown_model")) == {
        "error": {"message": "no such model", "type": "invalid_request_error", "param": None, "code": "unknown_model"}
    }
    assert json.loads(anthropic.error_body(429, "over budget")) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "over budget"},
    }
