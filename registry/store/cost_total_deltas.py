"""Running cost totals: what a change to a session's cost shares (or its outcome) adds to the
`cost_totals` rows (one per cost table and key, registry.session_views.COST_KEYS), so a cost
table reads one row per key instead of summing a share per session (at a million receipts,
half a million shares per table). Both stores apply these deltas in the transaction that
changes the shares, the old shares subtracted and the new ones added; shared here so they
count alike. A share is (by_key, key, in_session, calls, failures, cost_micro_usd,
input_tokens, output_tokens), as the stores keep it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

FAILED_OUTCOMES: Final = ("failed", "abandoned")
# cost_totals' columns after (by_key, key), in order; `shares` counts the share rows (a key
# whose count falls to 0 is listed no more).
TOTAL_COLUMNS: Final = (
    "shares",
    "calls",
    "failures",
    "cost_micro_usd",
    "input_tokens",
    "output_tokens",
    "sessions",
    "successful_outcomes",
    "failed_session_cost_micro_usd",
)

Deltas = dict[tuple[str, str], list[int]]


def add_shares(deltas: Deltas, shares: Iterable[Sequence[Any]], outcome: str, sign: int) -> None:
    """Adds (sign 1) or takes away (-1) the shares, counted under the session's `outcome`
    ("" while it runs; a share outside any session has none)."""
    for by_key, key, in_session, calls, failures, cost, input_tokens, output_tokens in shares:
        in_a_session = bool(in_session)
        values = (
            1,
            calls,
            failures,
            cost,
            input_tokens,
            output_tokens,
            int(in_a_session),
            int(in_a_session and outcome == "succeeded"),
            cost if in_a_session and outcome in FAILED_OUTCOMES else 0,
        )
        row = deltas.setdefault((str(by_key), str(key)), [0] * len(TOTAL_COLUMNS))
        for n, value in enumerate(values):
            row[n] += sign * int(value)


def rows_of(deltas: Deltas) -> list[tuple[Any, ...]]:
    """The deltas that change something, by (by_key, key): one order for every transaction,
    so two that update the same rows wait for each other instead of deadlocking."""
    return [(by_key, key, *values) for (by_key, key), values in sorted(deltas.items()) if any(values)]
