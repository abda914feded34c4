"""Signs that a running session loops or makes no progress, computed from its receipts as they
arrive (the receipt store keeps them per session, beside its aggregate), and the thresholds
that turn them into reasons (`meshwarden sessions suspect`, the registry's
meshwarden_sessions_suspect gauge).

- repeating: the same capability called with the same argument hash (the receipt's
  arguments_sha256) `repeats` times or more in the session: an agent going round in circles.
- retrying: retries over max(successes, 1) above `retries_per_success`. A retry is an attempt
  after the first of one call (the mesh's retries) or a call repeating one of the session
  that failed (the agent's own retries); a success is a call that ended OK.
- spending: spent `spend_micro_usd` or more with no outcome, and a call within the last
  `spending_within_s`: money still going out, nothing to show yet.
- idle: no call for `idle_s` and no outcome (stuck).
Only running sessions (no outcome reported) are suspects.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.store.receipt_columns import seconds
from meshwarden.registry.store.records import SessionSignals, SuspectThresholds
from meshwarden.v1 import receipts_pb2, session_insights_pb2

REASONS: Final = ("repeating", "retrying", "spending", "idle")
DEFAULTS: Final = SuspectThresholds()
_MAX_WINDOW_S: Final = 30 * 86400


def thresholds_of(request: session_insights_pb2.ListSuspectSessionsRequest) -> SuspectThresholds:
    """The request's thresholds (0: the default), checked; InvalidInput names a bad one."""
    limits = SuspectThresholds(
        repeats=request.repeats or DEFAULTS.repeats,
        retries_per_success=request.retries_per_success or DEFAULTS.retries_per_success,
        spend_micro_usd=request.spend_micro_usd or DEFAULTS.spend_micro_usd,
        spending_within_s=request.spending_within_s or DEFAULTS.spending_within_s,
        idle_s=request.idle_s or DEFAULTS.idle_s,
    )
    if limits.repeats < 2:
        raise InvalidInput("repeats", f"must be at least 2 (a call made once more is no loop), got {limits.repeats}")
    if not 0 < limits.retries_per_success <= 1000:
        raise InvalidInput("retries_per_success", f"must be above 0 and at most 1000, got {limits.retries_per_success}")
    for field, value in (("spending_within_s", limits.spending_within_s), ("idle_s", limits.idle_s)):
        if value > _MAX_WINDOW_S:
            raise InvalidInput(field, f"must be at most {_MAX_WINDOW_S} s (30 days), got {value:g}")
    if request.reason and request.reason not in REASONS:
        raise InvalidInput("reason", f"is {request.reason!r}; it must be one of {', '.join(REASONS)} or empty")
    return limits


def signals_of(session_id: str, receipts: Iterable[receipts_pb2.Receipt]) -> SessionSignals:
    calls: dict[str, receipts_pb2.Receipt] = {}
    for receipt in receipts:  # one side per call: the caller's when stored (its attempts, its status)
        kept = calls.get(receipt.call_id)
        if kept is None or (kept.direction != "outbound" and receipt.direction == "outbound"):
            calls[receipt.call_id] = receipt
    repeats: dict[tuple[str, str], int] = {}
    failed_before: set[tuple[str, str]] = set()
    retries = successes = 0
    for call in sorted(calls.values(), key=lambda r: (seconds(r.started_at), r.call_id)):
        key = (call.capability, call.arguments_sha256)
        repeats[key] = repeats.get(key, 0) + 1
        retries += max(call.attempt - 1, 0) + (key in failed_before)
        if call.status == "OK":
            successes += 1
        else:
            failed_before.add(key)
    (capability, _), most = max(repeats.items(), key=lambda item: (item[1], item[0]), default=(("", ""), 0))
    return SessionSignals(
        session_id=session_id,
        max_repeats=most,
        repeated_capability=capability if most > 1 else "",
        retries=retries,
        successes=successes,
    )


def reasons(
    signals: SessionSignals, *, cost_micro_usd: int, last_activity_at: float, now: float, limits: SuspectThresholds
) -> list[str]:
    """Why a running session is a suspect under `limits` (empty: it is not one)."""
    found = []
    if signals.max_repeats >= limits.repeats:
        found.append("repeating")
    if signals.retries and signals.retries > limits.retries_per_success * max(signals.successes, 1):
        found.append("retrying")
    if cost_micro_usd >= limits.spend_micro_usd and last_activity_at >= now - limits.spending_within_s:
        found.append("spending")
    if last_activity_at < now - limits.idle_s:
        found.append("idle")
    return found
