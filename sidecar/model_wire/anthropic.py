"""Anthropic's Messages API (`/v1/messages`).

`max_tokens` is required by the API; a request without it gets the catalog's default rather
than a refusal, as the gateway promises for every API. Usage: `input_tokens` excludes cache
reads and writes, so the input measured here adds them (cache reads are also counted as
cached input, billed at the cached price). In a stream, `message_start` carries the input and
`message_delta` the cumulative output.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final

from meshwarden.sidecar.model_wire.measured import BadModelRequest, Measured, RequestFacts, count, tokens_in_text

PATH: Final = "/v1/messages"
# A content block delta's text, tool input or thinking, as JSON writes it.
_TEXT: Final = re.compile(rb'"(?:text|partial_json|thinking)"\s*:\s*"((?:[^"\\]|\\.)*)"')
API_VERSION: Final = "2023-06-01"  # sent when the client sends no anthropic-version


def read_request(body: Mapping[str, object]) -> RequestFacts:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadModelRequest("model: Field required (a model name from the sidecar's catalog)", "model")
    if not isinstance(body.get("messages"), list):
        raise BadModelRequest("messages: Field required (an array of message objects)", "messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadModelRequest("stream: Input should be a valid boolean", "stream")
    cap = body.get("max_tokens")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise BadModelRequest(f"max_tokens: must be a positive integer, got {json.dumps(cap)[:40]}", "max_tokens")
    return RequestFacts(model=model, stream=stream, max_output_tokens=cap if isinstance(cap, int) else None)


def upstream_body(body: Mapping[str, object], upstream_model: str, max_output_tokens: int) -> bytes:
    sent = dict(body)
    sent["model"] = upstream_model
    sent["max_tokens"] = max_output_tokens
    return json.dumps(sent, separators=(",", ":")).encode()


def _from_usage(usage: Mapping[str, object], model: str) -> Measured:
    read = count(usage.get("cache_read_input_tokens"))
    written = count(usage.get("cache_creation_input_tokens"))
    return Measured(count(usage.get("input_tokens")) + read + written, count(usage.get("output_tokens")), read, model)


def measured(answer: Mapping[str, object]) -> Measured:
    usage = answer.get("usage")
    model = answer.get("model")
    return _from_usage(usage if isinstance(usage, dict) else {}, model if isinstance(model, str) else "")


class MessagesStreamMeter:
    def __init__(self) -> None:
        self._start: Measured | None = None
        self._output: int | None = None
        self._chars = 0
        self._deltas = 0
        self._stopped = False

    def observe(self, data: bytes) -> bool:
        if b'"content_block_delta"' in data:  # text counted without parsing JSON
            for found in _TEXT.finditer(data):
                if found.group(1):
                    self._chars += len(found.group(1)) - found.group(1).count(b"\\")
                    self._deltas += 1
            return True
        if not any(kind in data for kind in (b'"message_start"', b'"message_delta"', b'"message_stop"')):
            return True
        try:
            event = json.loads(data)
        except ValueError:
            return True
        if not isinstance(event, dict):
            return True
        kind = event.get("type")
        if kind == "message_start" and isinstance(event.get("message"), dict):
            message = event["message"]
            usage = message.get("usage")
            model = message.get("model")
            self._start = _from_usage(usage if isinstance(usage, dict) else {}, model if isinstance(model, str) else "")
        elif kind == "message_delta" and isinstance(event.get("usage"), dict):
            self._output = count(event["usage"].get("output_tokens"))
        elif kind == "message_stop":
            self._stopped = True
        return True

    def measured(self) -> Measured:
        """The provider's figures where they came: `message_start` gives the input (so a stream
        cut after it is charged its real input), `message_delta` the output."""
        start = self._start or Measured(input_estimated=True)
        counted = max(start.output_tokens, tokens_in_text(self._chars, self._deltas))
        return Measured(
            start.input_tokens,
            self._output if self._output is not None else counted,
            start.cached_input_tokens,
            start.model,
            input_estimated=self._start is None,
            output_estimated=self._output is None,
        )


def error_body(status: int, message: str) -> bytes:
    """Anthropic's error shape: {"type": "error", "error": {"type", "message"}}."""
    return json.dumps(
        {"type": "error", "error": {"type": _TYPES.get(status, "api_error"), "message": message}}
    ).encode()


_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}
