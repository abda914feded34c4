"""sidecar.failure_window: calls and failures over a sliding window of time buckets."""

from __future__ import annotations

import pytest

from meshwarden.sidecar.failure_window import FailureWindow, WindowCounts


def test_counts_what_was_recorded_within_the_window() -> None:
    window = FailureWindow(10.0)
    for n in range(10):
        window.record(100.0 + n * 0.5, failed=n % 3 == 0)
    assert window.counts(105.0) == WindowCounts(failures=4, calls=10)
    assert window.counts(105.0).rate == pytest.approx(0.4)


def test_old_buckets_leave_the_window() -> None:
    window = FailureWindow(10.0, buckets=10)
    window.record(100.0, failed=True)
    window.record(105.0, failed=False)
    assert window.counts(109.9) == WindowCounts(1, 2)
    assert window.counts(111.0) == WindowCounts(0, 1)  # the failure at 100 s is over 10 s old
    assert window.counts(116.0) == WindowCounts(0, 0)


def test_a_slot_reused_after_a_full_turn_starts_afresh() -> None:
    window = FailureWindow(10.0, buckets=10)
    window.record(100.2, failed=True)
    window.record(110.3, failed=False)  # same slot, ten seconds later
    assert window.counts(110.5) == WindowCounts(0, 1)


def test_clear_forgets_everything_and_empty_rate_is_zero() -> None:
    window = FailureWindow(5.0)
    window.record(1.0, failed=True)
    window.clear()
    assert window.counts(1.0) == WindowCounts(0, 0) and window.counts(1.0).rate == 0.0


def test_refuses_a_window_without_length() -> None:
    with pytest.raises(ValueError, match="positive length"):
        FailureWindow(0.0)
