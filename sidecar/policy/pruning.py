"""Leave out of a pair's policy set the policies that are false for that pair whatever the call.

Cedar evaluates a policy's conditions left to right, `&&` stopping at the first false. So if
the leading conditions that read no context (`resource.risk_tier == 3` in `resource.risk_tier
== 3 && context.time.weekday >= 6`) are false for a (caller, capability) pair, the policy is
false for that pair on every call: they depend only on the principal, the resource and the
entities, all fixed for a bundle revision. Those leading conditions are evaluated once per
pair at activation, as a probe policy with the same scope; one `is_authorized_batch` call
per probe covers all pairs. A probe that is false without error drops the policy from the
pair's set. One that is true or errors keeps it, so the decision, its deciding policies and
its errors come out of Cedar exactly as before. A policy that reads no context at all is
its own probe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import reduce
from typing import Final, TypeVar

import cedarpy
from cedarpy import pst

from meshwarden.sidecar.policy.reads import expression_reads

_BATCH_PAIRS: Final = 50  # requests per cedarpy call (it holds the GIL throughout): about a millisecond each

Pair = TypeVar("Pair")


def context_free_probe(policy: pst.Template) -> pst.Template | None:
    """`policy` cut down to its leading conditions that read no context; None if it has none."""
    leading: list[pst.Expr] = []
    for clause in policy.clauses:
        parts = _conjuncts(clause.expr) if isinstance(clause, pst.When) else [pst.UnaryOp("not", clause.expr)]
        for part in parts:
            if expression_reads(part).anything:
                return _probe(policy, leading)
            leading.append(part)
    return _probe(policy, leading)


def prune_false_for_pair(
    sets: Mapping[Pair, frozenset[int]],
    probes: Mapping[int, pst.Template],
    policy_set: Callable[[pst.Template], cedarpy.PolicySet],
    request: Callable[[Pair], dict[str, object]],
    entities: cedarpy.Entities,
) -> dict[Pair, frozenset[int]]:
    """`sets` with every policy whose probe is false for the pair removed."""
    pairs_of: dict[int, list[Pair]] = {}
    for pair, indexes in sets.items():
        for index in indexes:
            if index in probes:
                pairs_of.setdefault(index, []).append(pair)
    false_for: dict[Pair, set[int]] = {}
    for index, all_pairs in pairs_of.items():
        probe = policy_set(probes[index])
        for start in range(0, len(all_pairs), _BATCH_PAIRS):  # each cedarpy call holds the GIL: keep it short
            pairs = all_pairs[start : start + _BATCH_PAIRS]
            results = cedarpy.is_authorized_batch([request(pair) for pair in pairs], probe, entities)
            _record_false(pairs, results, index, false_for)
    return {pair: indexes - false_for.get(pair, set()) for pair, indexes in sets.items()}


def _record_false(
    pairs: Sequence[Pair], results: Sequence[cedarpy.AuthzResult], index: int, false_for: dict[Pair, set[int]]
) -> None:
    """Records policy `index` as false for each pair whose probe decided and matched nothing."""
    for pair, result in zip(pairs, results, strict=True):
        decided = result.decision is not cedarpy.Decision.NoDecision
        if decided and not result.diagnostics.reasons and not result.diagnostics.errors:
            false_for.setdefault(pair, set()).add(index)


def _conjuncts(expr: pst.Expr) -> list[pst.Expr]:
    """`a && b && c` as [a, b, c], in evaluation order."""
    if isinstance(expr, pst.BinaryOp) and expr.op == "and":
        return _conjuncts(expr.left) + _conjuncts(expr.right)
    return [expr]


def _probe(policy: pst.Template, leading: Sequence[pst.Expr]) -> pst.Template | None:
    if not leading:
        return None
    condition = reduce(lambda left, right: pst.BinaryOp("and", left, right), leading)
    return replace(policy, effect="permit", clauses=(pst.When(condition),))
