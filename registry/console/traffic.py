"""Who calls whom, how often, how often it fails and how slowly: the console's live map,
computed from the calls of a recent window (meshwarden.receipt_calls, both sides merged).

Pure functions, run in a worker thread by the console's reads. An edge is (caller, callee):
the callee of a model call is "model:<provider>", of a tool call "tool:<server>", since
neither is an agent of the mesh. A call failed when its status is not OK (refusals
included: a kill switch or a denial is a failure the caller lived through). p99 is the
nearest-rank 99th percentile of the caller-side latency.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from meshwarden.receipt_calls import ReceiptCall

OK = "OK"


@dataclass(frozen=True, slots=True)
class Flow:
    """Calls over one edge (or into or out of one agent) in the window."""

    calls: int
    failures: int
    per_s: float
    p99_ms: float

    @property
    def error_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0


NO_FLOW = Flow(0, 0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class Edge:
    caller: str
    callee: str
    flow: Flow


@dataclass(frozen=True, slots=True)
class Traffic:
    window_s: float
    edges: tuple[Edge, ...]  # busiest first
    served: dict[str, Flow] = field(default_factory=dict)  # by callee agent
    made: dict[str, Flow] = field(default_factory=dict)  # by caller agent


def callee_of(call: ReceiptCall) -> str:
    if call.call_kind == "model":
        return f"model:{call.model_provider or '?'}"
    if call.call_kind == "tool":
        return f"tool:{call.capability.split('.', 1)[0]}"
    return call.callee_agent or "?"


def traffic(calls: Iterable[ReceiptCall], window_s: float) -> Traffic:
    by_edge: dict[tuple[str, str], list[ReceiptCall]] = {}
    served: dict[str, list[ReceiptCall]] = {}
    made: dict[str, list[ReceiptCall]] = {}
    for call in calls:
        caller, callee = call.caller_agent or "?", callee_of(call)
        by_edge.setdefault((caller, callee), []).append(call)
        made.setdefault(caller, []).append(call)
        served.setdefault(callee, []).append(call)
    edges = [Edge(caller, callee, flow(group, window_s)) for (caller, callee), group in by_edge.items()]
    edges.sort(key=lambda e: (-e.flow.calls, e.caller, e.callee))
    return Traffic(
        window_s=window_s,
        edges=tuple(edges),
        served={name: flow(group, window_s) for name, group in served.items()},
        made={name: flow(group, window_s) for name, group in made.items()},
    )


def flow(calls: Sequence[ReceiptCall], window_s: float) -> Flow:
    latencies = sorted(c.latency_us for c in calls)
    return Flow(
        calls=len(calls),
        failures=sum(1 for c in calls if c.status != OK),
        per_s=len(calls) / window_s if window_s > 0 else 0.0,
        p99_ms=percentile(latencies, 0.99) / 1000.0,
    )


def percentile(ordered: Sequence[int], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    if not ordered:
        return 0.0
    return float(ordered[max(math.ceil(q * len(ordered)) - 1, 0)])
