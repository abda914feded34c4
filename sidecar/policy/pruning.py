"""Leave out of a pair's policy set the policies that are false for that pair whatever the call.

A policy that reads nothing of the context (`when { principal.tier == 1 &&
resource.risk_tier == 3 }`) depends only on the principal, the resource and the entities,
all fixed for a bundle revision. Evaluated once per (caller, capability) pair at activation,
it is either false (Cedar would find it not applicable on every call: leave it out), true,
or an error (keep it: the decision, its deciding policies and its errors then come out of
Cedar exactly as before). One `is_authorized_batch` call per such policy covers all pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import cedarpy

Pair = TypeVar("Pair")


def prune_false_context_free(
    sets: Mapping[Pair, frozenset[int]],
    context_free: frozenset[int],
    single_policy_set: Callable[[int], cedarpy.PolicySet],
    request: Callable[[Pair], dict[str, object]],
    entities: cedarpy.Entities,
) -> dict[Pair, frozenset[int]]:
    """`sets` with every context-free policy that is false for its pair removed."""
    pairs_of: dict[int, list[Pair]] = {}
    for pair, indexes in sets.items():
        for index in indexes & context_free:
            pairs_of.setdefault(index, []).append(pair)
    false_for: dict[Pair, set[int]] = {}
    for index, pairs in pairs_of.items():
        results = cedarpy.is_authorized_batch([request(pair) for pair in pairs], single_policy_set(index), entities)
        for pair, result in zip(pairs, results, strict=True):
            decided = result.decision is not cedarpy.Decision.NoDecision
            if decided and not result.diagnostics.reasons and not result.diagnostics.errors:
                false_for.setdefault(pair, set()).add(index)
    return {pair: indexes - false_for.get(pair, set()) for pair, indexes in sets.items()}
