"""The two significance tests `meshwarden changes` flags differences with, written out here
because the registry has no statistics dependency (scipy is some 40 MB for two formulas):
a two-proportion z-test for success rates and a Mann-Whitney U test for latencies, both with
the normal approximation (math.erfc gives the two-sided p-value), fine for the tens of calls
or more a side needs before a flag means anything. Too few calls: p = 1 (never flagged).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Final

MIN_CALLS: Final = 10  # per side, before either test says anything


def two_proportion_p(successes_a: int, calls_a: int, successes_b: int, calls_b: int) -> float:
    """Two-sided p-value that the success rates of a and b are equal."""
    if calls_a < MIN_CALLS or calls_b < MIN_CALLS:
        return 1.0
    pooled = (successes_a + successes_b) / (calls_a + calls_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / calls_a + 1 / calls_b))
    if spread == 0:
        return 1.0  # both all-succeeded or all-failed: no difference
    z = (successes_a / calls_a - successes_b / calls_b) / spread
    return math.erfc(abs(z) / math.sqrt(2))


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value that a and b come from the same distribution (ties get mean ranks,
    and the variance their correction)."""
    return mann_whitney_counted_p(Counter(a), Counter(b))


def mann_whitney_counted_p(a: Mapping[float, int], b: Mapping[float, int]) -> float:
    """mann_whitney_p over how many times each value occurs on each side: the work grows with
    the distinct values, not the calls (a store hands over latencies counted that way)."""
    n_a, n_b = sum(a.values()), sum(b.values())
    if n_a < MIN_CALLS or n_b < MIN_CALLS:
        return 1.0
    n = n_a + n_b
    rank_sum_a, tie_term, below = 0.0, 0.0, 0
    for value in sorted(set(a) | set(b)):
        in_a, tied = a.get(value, 0), a.get(value, 0) + b.get(value, 0)
        mean_rank = below + (tied + 1) / 2  # the ranks below+1 .. below+tied, averaged
        rank_sum_a += mean_rank * in_a
        tie_term += tied**3 - tied
        below += tied
    u = rank_sum_a - n_a * (n_a + 1) / 2
    variance = n_a * n_b / 12 * ((n + 1) - tie_term / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (u - n_a * n_b / 2) / math.sqrt(variance)
    return math.erfc(abs(z) / math.sqrt(2))
