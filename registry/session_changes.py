"""Which change caused a regression (SessionInsights.ListChanges, `meshwarden changes`):
success rate, cost per success and latency before and after each change the registry knows of.

A change is read from what the calls themselves carried, so it needs no change log: for each
subject, the values in the order they first appear, and a change where a new one appears.
- version: an agent's version (the callee side's), subject the agent;
- model: the model an agent's model calls got (usage.model), subject the agent;
- bundle: the policy bundle revision the caller's sidecar ran, subject "mesh";
- tool_schema: a tool's declared input-schema hash, subject "server.tool";
- route: an operator's `route set` (the audit log), subject the capability; its sides are the
  capability's calls before and after the moment it was set.
Before are the calls with the previous value, after those with the new one (so a canary that
serves both at once compares the two versions, not two periods), within the window asked for.
Success rate: a two-proportion z-test; latency: Mann-Whitney U (registry.change_tests). Cost
per success (spend over the sessions that reported "succeeded") is shown, not tested.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from google.protobuf import timestamp_pb2

from meshwarden.registry import change_tests
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.outcomes import StoredOutcome
from meshwarden.registry.session_views import SUCCEEDED
from meshwarden.registry.store.records import AuditEntry, CallFact
from meshwarden.v1 import session_insights_pb2

KINDS: Final = ("version", "model", "bundle", "tool_schema", "route")
DEFAULT_ALPHA: Final = 0.05
_CURSOR_MAX: Final = 600


@dataclass(slots=True)
class _Subject:
    order: list[str] = field(default_factory=list)  # values by first appearance
    first_at: dict[str, float] = field(default_factory=dict)
    calls: dict[str, list[CallFact]] = field(default_factory=dict)


def changes(
    facts: Iterable[CallFact],
    outcomes: Mapping[str, StoredOutcome],
    route_sets: Iterable[AuditEntry],
    *,
    kind: str = "",
    subject: str = "",
    alpha: float = DEFAULT_ALPHA,
) -> list[session_insights_pb2.Change]:
    """Every change the calls (and the route audit entries) show, newest first."""
    calls = sorted(facts, key=lambda c: (c.started_at, c.call_id))
    found: list[session_insights_pb2.Change] = []
    for name, value_of in _VALUES.items():
        if kind and kind != name:
            continue
        for subject_name, seen in _subjects(calls, value_of).items():
            if subject and subject != subject_name:
                continue
            for before, after in zip(seen.order, seen.order[1:], strict=False):
                old, new = seen.calls[before], seen.calls[after]
                found.append(
                    _compared(name, subject_name, (before, after), seen.first_at[after], (old, new), outcomes, alpha)
                )
    if kind in ("", "route"):
        found += _route_changes(calls, outcomes, route_sets, subject, alpha)
    found.sort(key=position, reverse=True)
    return found


def position(change: session_insights_pb2.Change) -> tuple[float, str, str, str]:
    """Where a change sits in the list (newest first): what the cursor holds."""
    return change.changed_at.ToNanoseconds() / 1e9, change.kind, change.subject, change.after


def cursor_after(change: session_insights_pb2.Change) -> str:
    return json.dumps(list(position(change)))


def parse_cursor(text: str) -> tuple[float, str, str, str]:
    try:
        if len(text) > _CURSOR_MAX:
            raise ValueError(text)
        at, kind, subject, after = json.loads(text)
        return float(at), str(kind), str(subject), str(after)
    except (ValueError, TypeError):
        raise InvalidInput("cursor", "is not one this registry gave; pass next_cursor unchanged") from None


ValueOf = Callable[[CallFact], tuple[str, str]]  # (subject, value); value "" skips the call

_VALUES: Final[Mapping[str, ValueOf]] = {
    "version": lambda c: (c.callee_agent, c.version if c.call_kind in ("agent", "") else ""),
    "model": lambda c: (c.spender_agent, c.model if c.call_kind == "model" else ""),
    "bundle": lambda c: ("mesh", str(c.bundle_revision) if c.bundle_revision else ""),
    "tool_schema": lambda c: (c.tool, c.tool_schema if c.call_kind == "tool" else ""),
}


def _subjects(calls: Sequence[CallFact], value_of: ValueOf) -> dict[str, _Subject]:
    subjects: dict[str, _Subject] = {}
    for call in calls:
        name, value = value_of(call)
        if not value or not name:
            continue
        seen = subjects.setdefault(name, _Subject())
        if value not in seen.first_at:
            seen.order.append(value)
            seen.first_at[value] = call.started_at
        seen.calls.setdefault(value, []).append(call)
    return subjects


def _route_changes(
    calls: Sequence[CallFact],
    outcomes: Mapping[str, StoredOutcome],
    route_sets: Iterable[AuditEntry],
    subject: str,
    alpha: float,
) -> list[session_insights_pb2.Change]:
    by_capability: dict[str, list[AuditEntry]] = {}
    for entry in route_sets:
        capability = entry.target.removeprefix("route ")
        if entry.action == "route.set" and (not subject or subject == capability):
            by_capability.setdefault(capability, []).append(entry)
    found = []
    for capability, entries in by_capability.items():
        entries.sort(key=lambda e: e.at)
        own = [c for c in calls if c.capability == capability]
        bounds = [0.0] + [e.at for e in entries] + [float("inf")]
        for n, entry in enumerate(entries):
            start, at, end = bounds[n], bounds[n + 1], bounds[n + 2]
            before = entries[n - 1].detail if n else "(as before)"
            sides = ([c for c in own if start <= c.started_at < at], [c for c in own if at <= c.started_at < end])
            found.append(_compared("route", capability, (before, entry.detail), at, sides, outcomes, alpha))
    return found


def _compared(
    kind: str,
    subject: str,
    values: tuple[str, str],
    changed_at: float,
    sides: tuple[Sequence[CallFact], Sequence[CallFact]],
    outcomes: Mapping[str, StoredOutcome],
    alpha: float,
) -> session_insights_pb2.Change:
    (before, after), (old, new) = values, sides
    old_ok, new_ok = sum(1 for c in old if c.ok), sum(1 for c in new if c.ok)
    success_p = change_tests.two_proportion_p(old_ok, len(old), new_ok, len(new))
    latency_p = change_tests.mann_whitney_p([c.latency_us for c in old], [c.latency_us for c in new])
    return session_insights_pb2.Change(
        kind=kind,
        subject=subject,
        before=before,
        after=after,
        changed_at=_timestamp(changed_at),
        before_side=_side(old, outcomes),
        after_side=_side(new, outcomes),
        success_rate_p=success_p,
        latency_p=latency_p,
        significant=[name for name, p in (("success_rate", success_p), ("latency", latency_p)) if p < alpha],
    )


def _side(calls: Sequence[CallFact], outcomes: Mapping[str, StoredOutcome]) -> session_insights_pb2.ChangeSide:
    spend = sum(c.cost_micro_usd for c in calls)
    succeeded = {
        c.session_id for c in calls if c.session_id and (o := outcomes.get(c.session_id)) and o.outcome == SUCCEEDED
    }
    latencies = sorted(c.latency_us for c in calls)
    return session_insights_pb2.ChangeSide(
        calls=len(calls),
        failures=sum(1 for c in calls if not c.ok),
        cost_micro_usd=spend,
        successful_outcomes=len(succeeded),
        cost_per_success_micro_usd=(spend + len(succeeded) // 2) // len(succeeded) if succeeded else 0,
        latency_p50_us=_quantile(latencies, 0.5),
        latency_p99_us=_quantile(latencies, 0.99),
    )


def _quantile(ordered: Sequence[int], q: float) -> int:
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else 0


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp
