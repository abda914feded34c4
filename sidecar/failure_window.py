"""Calls and failures over the last few seconds, in time buckets: what a failure rate is
measured on. pybreaker counts consecutive failures only; an instance failing every other call
never trips it, so the breaker board keeps one of these per instance as well.

The window is a ring of `buckets` slots, each `window_s / buckets` seconds wide. Recording a
call touches one slot (O(1), on every call); reading the totals sums the slots still inside
the window (on failures and for health reports only). Time comes from the caller, so tests
pass a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WindowCounts:
    failures: int
    calls: int

    @property
    def rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0


class FailureWindow:
    __slots__ = ("_width", "_ids", "_calls", "_failures", "window_s")

    def __init__(self, window_s: float, buckets: int = 10) -> None:
        if window_s <= 0 or buckets <= 0:
            raise ValueError(f"a failure window needs a positive length and bucket count, got {window_s} s, {buckets}")
        self.window_s = window_s
        self._width = window_s / buckets
        self._ids = [-1] * buckets  # which bucket (time // width) each slot currently holds
        self._calls = [0] * buckets
        self._failures = [0] * buckets

    def record(self, now: float, failed: bool) -> None:
        bucket = int(now // self._width)
        slot = bucket % len(self._ids)
        if self._ids[slot] != bucket:  # the slot held an older bucket: start it afresh
            self._ids[slot], self._calls[slot], self._failures[slot] = bucket, 0, 0
        self._calls[slot] += 1
        if failed:
            self._failures[slot] += 1

    def counts(self, now: float) -> WindowCounts:
        """Calls and failures recorded in the last `window_s` seconds (to bucket precision)."""
        newest = int(now // self._width)
        oldest = newest - len(self._ids) + 1
        calls = failures = 0
        for slot, bucket in enumerate(self._ids):
            if oldest <= bucket <= newest:
                calls += self._calls[slot]
                failures += self._failures[slot]
        return WindowCounts(failures, calls)

    def clear(self) -> None:
        for slot in range(len(self._ids)):
            self._ids[slot], self._calls[slot], self._failures[slot] = -1, 0, 0
