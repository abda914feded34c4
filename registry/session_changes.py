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

The calls of each value are compared as sides (records.ChangeSide): their counts, and their
latencies rounded to 3 significant digits (latency_bucket) and counted, which is how the
stores sum them where the call facts lie (a million calls become a few thousand rows), and
how `sides_of` sums facts made from receipts, so both give the same answer.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

from google.protobuf import timestamp_pb2

from meshwarden.registry import change_tests
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.outcomes import StoredOutcome
from meshwarden.registry.session_views import SUCCEEDED
from meshwarden.registry.store.records import AuditEntry, CallFact, ChangeSide
from meshwarden.v1 import session_insights_pb2

KINDS: Final = ("version", "model", "bundle", "tool_schema", "route")
DEFAULT_ALPHA: Final = 0.05
_CURSOR_MAX: Final = 600


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
    facts = list(facts)
    return changes_of(sides_of(facts, outcomes), facts, outcomes, route_sets, kind=kind, subject=subject, alpha=alpha)


def changes_of(
    sides: Iterable[ChangeSide],
    route_facts: Iterable[CallFact],
    outcomes: Mapping[str, StoredOutcome],
    route_sets: Iterable[AuditEntry],
    *,
    kind: str = "",
    subject: str = "",
    alpha: float = DEFAULT_ALPHA,
) -> list[session_insights_pb2.Change]:
    """`changes` from the sides already summed, and the calls of the capabilities whose route
    was set (route_capabilities) with their sessions' outcomes."""
    by_subject: dict[tuple[str, str], list[ChangeSide]] = {}
    for side in sides:
        if (not kind or kind == side.kind) and (not subject or subject == side.subject):
            by_subject.setdefault((side.kind, side.subject), []).append(side)
    found: list[session_insights_pb2.Change] = []
    for (name, subject_name), seen in by_subject.items():
        seen.sort(key=lambda s: (s.first_at, s.value))  # values by first appearance
        for old, new in zip(seen, seen[1:], strict=False):
            found.append(_compared(name, subject_name, (old.value, new.value), new.first_at, (old, new), alpha))
    if kind in ("", "route"):
        found += _route_changes(list(route_facts), outcomes, route_sets, subject, alpha)
    found.sort(key=position, reverse=True)
    return found


def latency_bucket(latency_us: int) -> int:
    """The latency to 3 significant digits (exact below 1 ms): quantiles within 1 %, and a
    side's latencies at most a few thousand counted values, however many calls it has."""
    step = 1
    while latency_us >= 1000 * step and step < 100_000:
        step *= 10
    return latency_us // step * step


def sides_of(facts: Iterable[CallFact], outcomes: Mapping[str, StoredOutcome]) -> list[ChangeSide]:
    """The facts summed per kind, subject and value (what the stores' change_sides return)."""
    calls = sorted(facts, key=lambda c: (c.started_at, c.call_id))
    found = []
    for kind, value_of in _VALUES.items():
        grouped: dict[tuple[str, str], list[CallFact]] = {}
        for call in calls:
            name, value = value_of(call)
            if name and value:
                grouped.setdefault((name, value), []).append(call)
        found += [_side_of(kind, name, value, own, outcomes) for (name, value), own in grouped.items()]
    return found


def route_capabilities(route_sets: Iterable[AuditEntry], subject: str = "") -> set[str]:
    """The capabilities an operator set a route for (whose calls a route change compares)."""
    found = {e.target.removeprefix("route ") for e in route_sets if e.action == "route.set"}
    return {c for c in found if not subject or c == subject}


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
            sides = (
                _side_of("route", capability, before, [c for c in own if start <= c.started_at < at], outcomes),
                _side_of("route", capability, entry.detail, [c for c in own if at <= c.started_at < end], outcomes),
            )
            found.append(_compared("route", capability, (before, entry.detail), at, sides, alpha))
    return found


def _compared(
    kind: str,
    subject: str,
    values: tuple[str, str],
    changed_at: float,
    sides: tuple[ChangeSide, ChangeSide],
    alpha: float,
) -> session_insights_pb2.Change:
    (before, after), (old, new) = values, sides
    success_p = change_tests.two_proportion_p(old.calls - old.failures, old.calls, new.calls - new.failures, new.calls)
    latency_p = change_tests.mann_whitney_counted_p(dict(old.latencies), dict(new.latencies))
    return session_insights_pb2.Change(
        kind=kind,
        subject=subject,
        before=before,
        after=after,
        changed_at=_timestamp(changed_at),
        before_side=_side(old),
        after_side=_side(new),
        success_rate_p=success_p,
        latency_p=latency_p,
        significant=[name for name, p in (("success_rate", success_p), ("latency", latency_p)) if p < alpha],
    )


def _side_of(
    kind: str, subject: str, value: str, calls: Sequence[CallFact], outcomes: Mapping[str, StoredOutcome]
) -> ChangeSide:
    succeeded = {
        c.session_id for c in calls if c.session_id and (o := outcomes.get(c.session_id)) and o.outcome == SUCCEEDED
    }
    return ChangeSide(
        kind=kind,
        subject=subject,
        value=value,
        first_at=min((c.started_at for c in calls), default=0.0),
        calls=len(calls),
        failures=sum(1 for c in calls if not c.ok),
        cost_micro_usd=sum(c.cost_micro_usd for c in calls),
        successful_sessions=len(succeeded),
        latencies=tuple(sorted(Counter(latency_bucket(c.latency_us) for c in calls).items())),
    )


def _side(side: ChangeSide) -> session_insights_pb2.ChangeSide:
    spend, succeeded = side.cost_micro_usd, side.successful_sessions
    return session_insights_pb2.ChangeSide(
        calls=side.calls,
        failures=side.failures,
        cost_micro_usd=spend,
        successful_outcomes=succeeded,
        cost_per_success_micro_usd=(spend + succeeded // 2) // succeeded if succeeded else 0,
        latency_p50_us=_quantile(side.latencies, side.calls, 0.5),
        latency_p99_us=_quantile(side.latencies, side.calls, 0.99),
    )


def _quantile(counted: Sequence[tuple[int, int]], calls: int, q: float) -> int:
    """The value at index int(q * calls) of the calls' latencies in order."""
    target, seen = min(int(q * calls), calls - 1), 0
    for value, count in counted:
        seen += count
        if seen > target:
            return value
    return 0


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp
