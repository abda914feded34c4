"""What the demo agents say their model calls cost: plausible list prices per million tokens
and token counts derived from the text (about four characters a token), so every run of the
demo reports the same usage and the cost table is the same each time."""

from __future__ import annotations

from typing import Final

import meshwarden

# micro-USD per million tokens (input, output) = USD per token, exactly.
PRICES: Final = {
    "gpt-4o-mini": (150_000, 600_000),
    "claude-3-5-haiku": (800_000, 4_000_000),
    "gpt-4.1-nano": (100_000, 400_000),
}


def tokens(text: str) -> int:
    return max(1, len(text) // 4)


def report(ctx: meshwarden.CallContext, model: str, input_tokens: int, output_tokens: int) -> None:
    price_in, price_out = PRICES[model]
    cost = (input_tokens * price_in + output_tokens * price_out + 500_000) // 1_000_000
    ctx.report_usage(model=model, input_tokens=input_tokens, output_tokens=output_tokens, cost_micro_usd=cost)
