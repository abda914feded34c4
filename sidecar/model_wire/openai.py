"""OpenAI's API: chat completions, the Responses API and embeddings.

Streams: chat completions report usage only when asked (`stream_options.include_usage`), in a
last chunk with no choices; the gateway asks for it, and drops that chunk on its way to a
client that did not ask (code that reads `chunk.choices[0]` would trip on it). The Responses
API reports usage in its `response.completed` event. A stream cut before its usage came is
measured from what streamed: the output from the text (and tool-call arguments) that came, the
input estimated from the request's text (OpenAI reports a stream's input only at its end), and
the receipt says both are estimates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final

from meshwarden.sidecar.model_call import ModelApi
from meshwarden.sidecar.model_wire.measured import BadModelRequest, Measured, RequestFacts, count, tokens_in_text

PATHS: Final = {
    ModelApi.OPENAI_CHAT: "/chat/completions",
    ModelApi.OPENAI_RESPONSES: "/responses",
    ModelApi.OPENAI_EMBEDDINGS: "/embeddings",
}
# The output cap's field, per API; chat completions also accept the older max_tokens.
_CAP_FIELDS: Final = {
    ModelApi.OPENAI_CHAT: ("max_completion_tokens", "max_tokens"),
    ModelApi.OPENAI_RESPONSES: ("max_output_tokens",),
    ModelApi.OPENAI_EMBEDDINGS: (),
}
# The text of a chat chunk's delta (its content, or a tool call's arguments), as JSON writes
# it (escapes counted once, roughly).
_CONTENT: Final = re.compile(rb'"(?:content|arguments|refusal)"\s*:\s*"((?:[^"\\]|\\.)*)"')
_DELTA: Final = re.compile(rb'"delta"\s*:\s*"((?:[^"\\]|\\.)*)"')
_REQUIRED: Final = {
    ModelApi.OPENAI_CHAT: "messages",
    ModelApi.OPENAI_RESPONSES: "input",
    ModelApi.OPENAI_EMBEDDINGS: "input",
}


def read_request(api: ModelApi, body: Mapping[str, object]) -> RequestFacts:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadModelRequest("you must provide a model parameter (a model name from the sidecar's catalog)", "model")
    required = _REQUIRED[api]
    if required not in body:
        raise BadModelRequest(f"missing required parameter: '{required}'", required)
    if api is ModelApi.OPENAI_CHAT and not isinstance(body["messages"], list):
        raise BadModelRequest("'messages' must be an array of message objects", "messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool) or (stream and api is ModelApi.OPENAI_EMBEDDINGS):
        raise BadModelRequest("'stream' must be true or false (embeddings do not stream)", "stream")
    cap: int | None = None
    for name in _CAP_FIELDS[api]:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadModelRequest(f"'{name}' must be a positive integer, got {json.dumps(value)[:40]}", name)
        cap = value if cap is None else min(cap, value)
    return RequestFacts(model=model, stream=stream, max_output_tokens=cap)


def upstream_body(api: ModelApi, body: Mapping[str, object], upstream_model: str, max_output_tokens: int) -> bytes:
    """The body the provider gets: its own model name, the cap the call runs with, and a
    request for usage in streams."""
    sent = dict(body)
    sent["model"] = upstream_model
    fields = _CAP_FIELDS[api]
    if fields:
        present = [name for name in fields if sent.get(name) is not None]
        for name in present or fields[:1]:
            sent[name] = max_output_tokens
    if api is ModelApi.OPENAI_CHAT and sent.get("stream"):
        options = sent.get("stream_options")
        sent["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return json.dumps(sent, separators=(",", ":")).encode()


def client_asked_usage(body: Mapping[str, object]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def measured(api: ModelApi, answer: Mapping[str, object]) -> Measured:
    """Usage from a whole (non-streamed) answer."""
    usage = answer.get("usage")
    model = answer.get("model")
    return _from_usage(api, usage if isinstance(usage, dict) else {}, model if isinstance(model, str) else "")


def _from_usage(api: ModelApi, usage: Mapping[str, object], model: str) -> Measured:
    if api is ModelApi.OPENAI_RESPONSES:
        details = usage.get("input_tokens_details")
        cached = count(details.get("cached_tokens")) if isinstance(details, dict) else 0
        return Measured(count(usage.get("input_tokens")), count(usage.get("output_tokens")), cached, model)
    details = usage.get("prompt_tokens_details")
    cached = count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return Measured(count(usage.get("prompt_tokens")), count(usage.get("completion_tokens")), cached, model)


class ChatStreamMeter:
    def __init__(self, client_asked_usage: bool) -> None:
        self._forward_usage = client_asked_usage
        self._usage: Measured | None = None
        self._model = ""
        self._chars = 0
        self._deltas = 0

    def observe(self, data: bytes) -> bool:
        if not data or data == b"[DONE]":
            return True
        if b'"usage"' not in data:  # most chunks: a delta; its text is counted without parsing JSON
            self._chars, self._deltas = _counted(_CONTENT, data, self._chars, self._deltas)
            return True
        try:
            chunk = json.loads(data)
        except ValueError:
            return True  # not ours to judge; the client sees what the provider sent
        if not isinstance(chunk, dict):
            return True
        model = chunk.get("model")
        if isinstance(model, str):
            self._model = model
        choices = chunk.get("choices")
        if choices:
            self._chars, self._deltas = _counted(_CONTENT, data, self._chars, self._deltas)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = _from_usage(ModelApi.OPENAI_CHAT, usage, self._model)
            return self._forward_usage or bool(choices)
        return True

    def measured(self) -> Measured:
        if self._usage is not None:
            return self._usage
        return _counted_output(self._chars, self._deltas, self._model)


class ResponsesStreamMeter:
    def __init__(self) -> None:
        self._usage: Measured | None = None
        self._model = ""
        self._chars = 0
        self._deltas = 0

    def observe(self, data: bytes) -> bool:
        if b'.delta"' in data:  # output text, a function call's arguments: counted without parsing JSON
            self._chars, self._deltas = _counted(_DELTA, data, self._chars, self._deltas)
            return True
        if b'"response":' not in data:
            return True
        try:
            event = json.loads(data)
        except ValueError:
            return True
        if not isinstance(event, dict):
            return True
        response = event.get("response")
        if isinstance(response, dict):
            model = response.get("model")
            if isinstance(model, str):
                self._model = model
            usage = response.get("usage")
            if isinstance(usage, dict):
                self._usage = _from_usage(ModelApi.OPENAI_RESPONSES, usage, self._model)
        return True

    def measured(self) -> Measured:
        if self._usage is not None:
            return self._usage
        return _counted_output(self._chars, self._deltas, self._model)


def _counted(pattern: re.Pattern[bytes], data: bytes, chars: int, deltas: int) -> tuple[int, int]:
    """The running count of streamed text bytes and of deltas that carried any."""
    for found in pattern.finditer(data):
        text = found.group(1)
        if text:
            chars += len(text) - text.count(b"\\")
            deltas += 1
    return chars, deltas


def _counted_output(chars: int, deltas: int, model: str) -> Measured:
    """A stream whose usage never came: its output counted, its input left to the hop's estimate."""
    return Measured(0, tokens_in_text(chars, deltas), 0, model, input_estimated=True, output_estimated=True)


def error_body(status: int, message: str, param: str = "", code: str = "") -> bytes:
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""
    return json.dumps(
        {
            "error": {
                "message": message,
                "type": _TYPES.get(status, "api_error"),
                "param": param or None,
                "code": code or None,
            }
        }
    ).encode()


_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
}
