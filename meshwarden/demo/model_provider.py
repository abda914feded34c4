"""A model provider stand-in: the OpenAI and Anthropic wire formats, as their public API
references describe them, answered by a deterministic "model" (no weights, nothing fetched).

    python -m meshwarden.demo.model_provider --listen 127.0.0.1:0 --key sk-test-...

Serves POST /v1/chat/completions, /v1/responses, /v1/embeddings (OpenAI: base URL
http://HOST:PORT/v1) and /v1/messages (Anthropic: base URL http://HOST:PORT), streaming (SSE)
and not, with usage blocks, and each provider's error shape. The demo runs it as its model
provider; the tests and benchmarks/model_gateway.py drive it through a sidecar.

The answer echoes the last user message; tokens are words (input: every word of the
messages; output: every word of the answer), so a test can check the gateway's arithmetic.
Options make it misbehave: answer every request with an HTTP status (`--fail 503`), cut each
stream after N events (`--cut-after N`), and record each request's headers and body
(`--seen FILE`, JSON lines) so a test can check what reached the provider.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import struct
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from meshwarden.addresses import parse_host_port
from meshwarden.ready import announce_ready
from meshwarden.stop_signals import stop_on_signals

DIMENSIONS = 8


def _words(value: object) -> list[str]:
    """Every word of the text in a message structure (strings, content blocks, lists)."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [w for item in value for w in _words(item)]
    if isinstance(value, dict):
        return [w for key in ("content", "text", "input", "system", "instructions") for w in _words(value.get(key))]
    return []


def _last_user_text(messages: object) -> str:
    if isinstance(messages, str):
        return messages
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role", "user") == "user":
                return " ".join(_words(message))
    return ""


class StandIn:
    def __init__(self, options: argparse.Namespace) -> None:
        self._key: str = options.key
        self._fail: int = options.fail
        self._cut_after: int = options.cut_after
        self._seen: Path | None = options.seen
        self._delay_s: float = options.delay_s
        self._slow_models: frozenset[str] = frozenset(options.slow_model)
        self._event_delay_s: float = options.event_delay_s
        self.requests = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/messages", self._messages)
        return app

    async def _admit(self, request: web.Request, anthropic: bool) -> tuple[dict[str, Any] | None, web.Response | None]:
        self.requests += 1
        raw = await request.read()
        if self._seen is not None:
            line = json.dumps({"path": request.path, "headers": dict(request.headers), "body": raw.decode()})
            await asyncio.to_thread(_append, self._seen, line)
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
        offered = request.headers.get("x-api-key", "") if anthropic else request.headers.get("Authorization", "")[7:]
        if offered != self._key:
            shown = f"{offered[:6]}{'*' * 10}{offered[-4:]}" if offered else "none"
            return None, _error(anthropic, 401, f"Incorrect API key provided: {shown}.", "invalid_api_key")
        if self._fail:
            return None, _error(anthropic, self._fail, f"the stand-in answers every request with {self._fail}", "")
        try:
            body = json.loads(raw)
        except ValueError:
            return None, _error(anthropic, 400, "We could not parse the JSON body of your request.", "")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return None, _error(anthropic, 400, "you must provide a model parameter", "")
        return body, None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, refusal = await self._admit(request, anthropic=False)
        if body is None:
            assert refusal is not None
            return refusal
        input_tokens = len(_words(body.get("messages")))
        answer = f"You said: {_last_user_text(body.get('messages'))}".split()
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(cap, int):
            answer = answer[:cap]
        model, created, ident = body["model"], int(time.time()), f"chatcmpl-{uuid.uuid4().hex[:24]}"
        usage = {
            "prompt_tokens": input_tokens,
            "completion_tokens": len(answer),
            "total_tokens": input_tokens + len(answer),
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": " ".join(answer), "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )
        base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
        events: list[tuple[str, object]] = [
            (
                "",
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                },
            )
        ]
        for i, word in enumerate(answer):
            text = word if i == 0 else f" {word}"
            events.append(("", {**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}))
        events.append(("", {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            events.append(("", {**base, "choices": [], "usage": usage}))
        events.append(("", "[DONE]"))
        return await self._stream(request, events, slow=model in self._slow_models)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body, refusal = await self._admit(request, anthropic=False)
        if body is None:
            assert refusal is not None
            return refusal
        input_tokens = len(_words(body.get("input"))) + len(_words(body.get("instructions")))
        answer = f"You said: {_last_user_text(body.get('input'))}".split()
        cap = body.get("max_output_tokens")
        if isinstance(cap, int):
            answer = answer[:cap]
        text = " ".join(answer)
        ident, item = f"resp_{uuid.uuid4().hex[:24]}", f"msg_{uuid.uuid4().hex[:24]}"
        message = {
            "type": "message",
            "id": item,
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        response: dict[str, Any] = {
            "id": ident,
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": body["model"],
            "output": [message],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": len(answer),
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + len(answer),
            },
        }
        if not body.get("stream"):
            return web.json_response(response)
        started = {**response, "status": "in_progress", "output": [], "usage": None}
        events: list[tuple[str, object]] = [("response.created", {"type": "response.created", "response": started})]
        for i, word in enumerate(answer):
            delta = word if i == 0 else f" {word}"
            events.append(
                (
                    "response.output_text.delta",
                    {
                        "type": "response.output_text.delta",
                        "item_id": item,
                        "output_index": 0,
                        "content_index": 0,
                        "delta": delta,
                    },
                )
            )
        events.append(("response.completed", {"type": "response.completed", "response": response}))
        for number, (_, data) in enumerate(events):
            if isinstance(data, dict):
                data["sequence_number"] = number
        return await self._stream(request, events)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body, refusal = await self._admit(request, anthropic=False)
        if body is None:
            assert refusal is not None
            return refusal
        inputs = body.get("input")
        texts = inputs if isinstance(inputs, list) else [inputs]
        data = []
        for index, text in enumerate(texts):
            vector = [((hash(str(text)) >> (4 * d)) % 97) / 97.0 for d in range(DIMENSIONS)]
            encoded: object = vector
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{DIMENSIONS}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = len(_words(texts))
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body, refusal = await self._admit(request, anthropic=True)
        if body is None:
            assert refusal is not None
            return refusal
        if not isinstance(body.get("max_tokens"), int):
            return _error(True, 400, "max_tokens: Field required", "")
        input_tokens = len(_words(body.get("messages"))) + len(_words(body.get("system")))
        answer = f"You said: {_last_user_text(body.get('messages'))}".split()[: body["max_tokens"]]
        ident = f"msg_{uuid.uuid4().hex[:24]}"
        message: dict[str, Any] = {
            "id": ident,
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": " ".join(answer)}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": len(answer),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        if not body.get("stream"):
            return web.json_response(message)
        start = {**message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 1}}
        events: list[tuple[str, object]] = [
            ("message_start", {"type": "message_start", "message": start}),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            ("ping", {"type": "ping"}),
        ]
        for i, word in enumerate(answer):
            text = word if i == 0 else f" {word}"
            events.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
                )
            )
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": len(answer)},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        return await self._stream(request, events)

    async def _stream(
        self, request: web.Request, events: list[tuple[str, object]], slow: bool = False
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        for sent, (name, data) in enumerate(events):
            if slow and sent:
                await asyncio.sleep(self._event_delay_s)  # a long generation, token by token
            if self._cut_after and sent >= self._cut_after:
                if request.transport is not None:
                    request.transport.close()  # a provider dropping the connection mid-stream
                return response
            text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
            prefix = f"event: {name}\n" if name else ""
            await response.write(f"{prefix}data: {text}\n\n".encode())
        await response.write_eof()
        return response


def _error(anthropic: bool, status: int, message: str, code: str) -> web.Response:
    kinds: Mapping[int, str] = {
        400: "invalid_request_error",
        401: "authentication_error",
        429: "rate_limit_error",
        500: "api_error",
        503: "overloaded_error" if anthropic else "api_error",
    }
    kind = kinds.get(status, "api_error")
    if anthropic:
        body: dict[str, object] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {"error": {"message": message, "type": kind, "param": None, "code": code or None}}
    return web.json_response(body, status=status)


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(line + "\n")


async def serve(options: argparse.Namespace) -> None:
    address = parse_host_port(options.listen)
    stand_in = StandIn(options)
    runner = web.AppRunner(stand_in.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, address.host, address.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    announce_ready("model-provider", listen=f"{host}:{port}", openai_base_url=f"http://{host}:{port}/v1")
    try:
        await stop_on_signals().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m meshwarden.demo.model_provider", description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--key", required=True, help="the API key clients must present")
    parser.add_argument("--fail", type=int, default=0, metavar="STATUS", help="answer every request with this status")
    parser.add_argument("--cut-after", type=int, default=0, metavar="N", help="cut each stream after N events")
    parser.add_argument("--seen", type=Path, default=None, metavar="FILE", help="append each request here (JSON lines)")
    parser.add_argument("--delay-s", type=float, default=0.0, help="wait this long before answering")
    parser.add_argument("--slow-model", action="append", default=[], metavar="MODEL", help="stream this model slowly")
    parser.add_argument("--event-delay-s", type=float, default=0.2, help="between a slow model's stream events")
    options = parser.parse_args(argv)
    asyncio.run(serve(options))


if __name__ == "__main__":
    main()
