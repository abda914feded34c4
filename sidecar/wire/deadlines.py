"""The one rule for a call's deadline across hops: what arrives becomes an absolute deadline
on this sidecar's monotonic clock, and what leaves gets what is left of it."""

from __future__ import annotations

from meshwarden.sidecar.call import Call


def answer_margin_s(remaining_s: float) -> float:
    """How much earlier than its caller this sidecar gives up (at most 5 ms, 5 % of the time
    left), so the caller receives the sidecar's explanation rather than its own bare
    "Deadline Exceeded"."""
    return min(0.005, remaining_s * 0.05)


def arriving(remaining_s: float | None, default_s: float, now: float, *, margin: bool) -> float:
    """The deadline of a call whose RPC has `remaining_s` left (None: the caller set none, and
    `default_s` applies). `margin`: leave the caller the time to read this sidecar's answer."""
    if remaining_s is None:
        return now + default_s
    return now + remaining_s - (answer_margin_s(remaining_s) if margin else 0.0)


def next_hop_timeout_s(call: Call, now: float) -> float:
    """The gRPC timeout for the next hop: what is left of the deadline, at least 1 ms (a call
    whose deadline already passed was refused earlier, by the deadline stage)."""
    return max(call.deadline - now, 0.001)
