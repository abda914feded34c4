"""The demo's models: each agent asks one model through its sidecar's model gateway, and the
gateway measures what it used; list prices per million tokens for the bundle's models.json.

The provider is the demo's stand-in (meshwarden.demo.model_provider), whose answers and token
counts are deterministic, so every run of the demo costs the same and the tables repeat."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import anthropic  # noqa: F401  imported at start-up, not on the first ticket (ctx.openai() imports lazily)
import openai  # noqa: F401

import meshwarden

# micro-USD per million tokens (input, output) = USD per token, exactly.
PRICES: Final = {
    "gpt-4o-mini": (150_000, 600_000),
    "claude-3-5-haiku": (800_000, 4_000_000),
    "gpt-4.1-nano": (100_000, 400_000),
}
ANTHROPIC_MODELS: Final = frozenset({"claude-3-5-haiku"})


def models_json(base_url: str, key_file: str) -> str:
    """models.json for the demo's bundle: the stand-in as an OpenAI-style and an Anthropic-style
    provider, its key in a 0600 file only the sidecars read."""
    credential = {"file": key_file}
    return json.dumps(
        {
            "providers": {
                "openai": {"api": "openai", "base_url": f"{base_url}/v1", "credential": credential},
                "anthropic": {"api": "anthropic", "base_url": base_url, "credential": credential},
            },
            "models": {
                name: {
                    "provider": "anthropic" if name in ANTHROPIC_MODELS else "openai",
                    "tier": "small",
                    "context_tokens": 128000,
                    "default_max_tokens": 256,
                    "max_output_tokens": 4096,
                    "price_micro_usd_per_mtok": {"input": price_in, "output": price_out, "cached_input": price_in // 2},
                }
                for name, (price_in, price_out) in PRICES.items()
            },
        },
        indent=2,
    )


@dataclass(frozen=True)
class Models:
    """The agent's model calls, on when it was given its sidecar's gateway (--gateway)."""

    enabled: bool

    async def think(self, ctx: meshwarden.CallContext, model: str, prompt: str) -> str:
        """One model call through the sidecar, attributed to this call's session and workflow: the
        agent holds no provider key, and reports no usage: the gateway measures it."""
        if not self.enabled:
            return ""
        messages: Any = [{"role": "user", "content": prompt}]
        if model in ANTHROPIC_MODELS:
            async with ctx.anthropic(max_retries=0) as claude:
                answer = await claude.messages.create(model=model, max_tokens=200, messages=messages)
                return str(answer.content[0].text)
        async with ctx.openai(max_retries=0) as client:
            completion = await client.chat.completions.create(model=model, messages=messages, max_tokens=200)
            return str(completion.choices[0].message.content or "")
