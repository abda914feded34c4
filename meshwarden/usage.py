"""What a call consumed, as the callee agent reports it: model, tokens and cost.

Money is kept in millionths of a US dollar (integers), so sums over thousands of calls stay
exact; `cost_usd` is accepted as a Decimal, an int, a decimal string ("0.0042") or a float,
and is rounded to the nearest micro-dollar once, here. A handler reports with
`ctx.report_usage(...)`; several reports within one call add up (the model names are joined
with "+" when they differ), and the caller reads it back as `Result.usage`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Final

from meshwarden.v1 import receipts_pb2

MAX_MODEL_CHARS: Final = 128  # the sidecars cut longer names; refuse them here, where they are written
MAX_COUNT: Final = 2**53  # exact in JSON numbers everywhere (and far beyond any real call)
_MICRO: Final = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Usage:
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micro_usd: int = 0

    @property
    def cost_usd(self) -> Decimal:
        return Decimal(self.cost_micro_usd) / _MICRO

    def __add__(self, other: Usage) -> Usage:
        models = [m for m in (self.model, other.model) if m]
        model = models[0] if len(set(models)) == 1 else "+".join(dict.fromkeys(models))
        return Usage(
            model=model[:MAX_MODEL_CHARS],
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_micro_usd=self.cost_micro_usd + other.cost_micro_usd,
        )

    def to_proto(self) -> receipts_pb2.Usage:
        return receipts_pb2.Usage(
            model=self.model,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_micro_usd=self.cost_micro_usd,
        )

    @classmethod
    def from_proto(cls, message: receipts_pb2.Usage) -> Usage:
        return cls(message.model, message.input_tokens, message.output_tokens, message.cost_micro_usd)


def checked_usage(
    *,
    model: str = "",
    input_tokens: int = 0,
    output_tokens: int = 0,
    cost_usd: Decimal | int | float | str | None = None,
    cost_micro_usd: int | None = None,
) -> Usage:
    """A Usage from what a handler reports; ValueError naming the argument that is wrong."""
    if not isinstance(model, str) or len(model) > MAX_MODEL_CHARS:
        raise ValueError(f"model must be a string of at most {MAX_MODEL_CHARS} characters, got {model!r:.60}")
    for name, count in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        _check_count(name, count)
    if cost_usd is not None and cost_micro_usd is not None:
        raise ValueError("give cost_usd or cost_micro_usd, not both")
    micro = 0
    if cost_micro_usd is not None:
        _check_count("cost_micro_usd", cost_micro_usd)
        micro = cost_micro_usd
    elif cost_usd is not None:
        micro = _to_micro_usd(cost_usd)
    return Usage(model=model, input_tokens=input_tokens, output_tokens=output_tokens, cost_micro_usd=micro)


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ValueError(f"{name} must be a whole number from 0 to 2**53, got {value!r}")


def _to_micro_usd(cost_usd: Decimal | int | float | str) -> int:
    if isinstance(cost_usd, bool):
        raise ValueError(f"cost_usd must be a number of US dollars, got {cost_usd!r}")
    if isinstance(cost_usd, float) and not math.isfinite(cost_usd):
        raise ValueError(f"cost_usd must be a finite number of US dollars, got {cost_usd!r}")
    try:
        # str() first: Decimal(0.1) would carry the float's binary error into the sum.
        dollars = Decimal(str(cost_usd)) if isinstance(cost_usd, float) else Decimal(cost_usd)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise ValueError(f"cost_usd must be a number of US dollars, got {cost_usd!r}") from exc
    if not dollars.is_finite() or dollars < 0:
        raise ValueError(f"cost_usd must be a finite, non-negative number of US dollars, got {cost_usd!r}")
    micro = int((dollars * _MICRO).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    _check_count("cost_usd in micro-dollars", micro)
    return micro


class UsageTally:
    """The usage one handler reported so far. Plain-def handlers report from a worker thread,
    hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total: Usage | None = None

    def add(self, usage: Usage) -> None:
        with self._lock:
            self._total = usage if self._total is None else self._total + usage

    @property
    def total(self) -> Usage | None:
        with self._lock:
            return self._total
