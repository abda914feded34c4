"""The input tokens of a request whose provider never said (a stream cut before its usage
came: OpenAI reports a stream's input only in its last chunk), estimated from the request's
text as well as the gateway can without the provider's tokenizer.

What counts is what the model reads: the text of each message or input item, the system prompt
or instructions, and the tools' definitions, at about four UTF-8 bytes a token, plus OpenAI's
documented framing of a chat (3 tokens per message and 3 to prime the reply; the cookbook's
"How to count tokens with tiktoken"). JSON keys, roles and the request's other parameters are
not text the model reads, so they do not count. An image counts as 85 tokens (the price of a
low-detail image; the gateway does not fetch or decode images to know more).

This is the figure a cut stream is charged, and the receipt says it is an estimate. The budget
reservation keeps its own worst case (bytes / 3 of the whole body, edges/model_http.py), which
must never fall short; this one aims at the truth.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from meshwarden.sidecar.model_call import ModelApi
from meshwarden.sidecar.model_wire.measured import BYTES_PER_TOKEN_TYPICAL

TOKENS_PER_MESSAGE: Final = 3
TOKENS_TO_PRIME_REPLY: Final = 3
TOKENS_PER_IMAGE: Final = 85
MAX_DEPTH: Final = 64  # the edge already refused deeper JSON; this bounds the walk regardless
_PROMPT_FIELDS: Final = {
    ModelApi.OPENAI_CHAT: ("messages",),
    ModelApi.OPENAI_RESPONSES: ("input", "instructions"),
    ModelApi.OPENAI_EMBEDDINGS: ("input",),
    ModelApi.ANTHROPIC_MESSAGES: ("system", "messages"),
}
_NOT_TEXT: Final = frozenset({"role", "type", "id", "call_id", "name", "cache_control", "detail", "status"})
_IMAGES: Final = frozenset({"image_url", "input_image", "image"})


def estimated_prompt_tokens(api: ModelApi, body: Mapping[str, object]) -> int:
    text_bytes, images = 0, 0
    for field in _PROMPT_FIELDS[api]:
        found = _text(body.get(field), 0)
        text_bytes, images = text_bytes + found[0], images + found[1]
    tools = body.get("tools")
    if isinstance(tools, list) and tools:  # the model reads the tools' definitions as text
        text_bytes += len(json.dumps(tools, separators=(",", ":"), ensure_ascii=False).encode())
    tokens = -(-text_bytes // BYTES_PER_TOKEN_TYPICAL) + images * TOKENS_PER_IMAGE
    if api is ModelApi.OPENAI_EMBEDDINGS:
        return tokens
    messages = body.get("messages") if api is not ModelApi.OPENAI_RESPONSES else body.get("input")
    count = len(messages) if isinstance(messages, list) else 1
    return tokens + count * TOKENS_PER_MESSAGE + TOKENS_TO_PRIME_REPLY


def _text(value: object, depth: int) -> tuple[int, int]:
    """(UTF-8 bytes of the text in `value`, images in it)."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "replace")), 0
    if depth >= MAX_DEPTH:
        return 0, 0
    text_bytes, images = 0, 0
    if isinstance(value, list):
        for item in value:
            found = _text(item, depth + 1)
            text_bytes, images = text_bytes + found[0], images + found[1]
    elif isinstance(value, dict):
        if value.get("type") in _IMAGES or "image_url" in value:
            return 0, 1
        for key, item in value.items():
            if key not in _NOT_TEXT:
                found = _text(item, depth + 1)
                text_bytes, images = text_bytes + found[0], images + found[1]
    return text_bytes, images
