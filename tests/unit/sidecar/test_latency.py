"""sidecar.latency: peak-EWMA per (capability, instance), with a fake clock."""

from __future__ import annotations

import math

import pytest

from meshwarden.sidecar.latency import LatencyBoard, PeakEwma
from tests.unit.sidecar.fakes import FakeClock

TAU = 10.0


def test_a_higher_latency_replaces_the_peak_at_once_and_lower_ones_pull_it_down_slowly() -> None:
    ewma = PeakEwma(0.0, 0.010)
    ewma.observe(1.0, 0.200, TAU)
    assert ewma.peak == 0.200
    assert ewma.smooth == pytest.approx(0.105)  # the mean of two answers, while it warms up
    ewma.observe(2.0, 0.010, TAU)
    decay = math.exp(-0.1)
    assert ewma.peak == pytest.approx(0.200 * decay + 0.010 * (1 - decay))
    assert 0.010 < ewma.peak < 0.200


def test_the_smooth_average_is_the_running_mean_at_first_then_weighs_by_time() -> None:
    ewma = PeakEwma(0.0, 0.300)  # an unlucky first answer
    for n in range(1, 100):
        ewma.observe(n * 0.01, 0.010, TAU)
    assert ewma.smooth == pytest.approx((0.300 + 99 * 0.010) / 100)
    before = ewma.smooth
    ewma.observe(60.0, 0.050, TAU)  # a minute later: the new answer weighs 1 - e^-6
    assert ewma.smooth == pytest.approx(before + (0.050 - before) * (1 - math.exp(-(60.0 - 0.99) / TAU)))


def test_the_smooth_average_ignores_a_lone_outlier_more_than_the_peak() -> None:
    ewma = PeakEwma(0.0, 0.010)
    for n in range(1, 50):
        ewma.observe(n * 0.01, 0.010, TAU)
    ewma.observe(0.5, 0.500, TAU)
    assert ewma.peak == 0.500 and ewma.smooth < 0.020


def test_the_first_answer_pays_for_the_connection_and_is_not_measured() -> None:
    clock = FakeClock()
    board = LatencyBoard(clock.monotonic, tau_s=TAU)
    board.observe("echo", "new", 0.080, clock.now)  # the mTLS handshake
    assert board.peak_s("echo", "new", clock.now) is None and board.snapshot() == []
    board.observe("echo", "new", 0.004, clock.now)
    assert board.peak_s("echo", "new", clock.now) == pytest.approx(0.004)
    assert board.peak_s("echo", "never-called", clock.now) is None


def test_the_peak_decays_towards_zero_while_an_instance_gets_no_calls() -> None:
    clock = FakeClock()
    board = LatencyBoard(clock.monotonic, tau_s=TAU)
    for _ in range(2):
        board.observe("echo", "slow", 0.300, clock.now)
    assert board.peak_s("echo", "slow", clock.now) == pytest.approx(0.300)
    assert board.peak_s("echo", "slow", clock.now + 3 * TAU) == pytest.approx(0.300 * math.exp(-3))


def test_snapshot_is_plain_data_per_capability_and_retain_forgets_departed_instances() -> None:
    clock = FakeClock()
    board = LatencyBoard(clock.monotonic)
    for _ in range(2):
        board.observe("echo", "a", 0.010, clock.now)
        board.observe("echo", "b", 0.020, clock.now)
        board.observe("kb.search", "a", 0.030, clock.now)
    clock.now += 2
    views = {(v.capability, v.instance_id): v for v in board.snapshot()}
    assert set(views) == {("echo", "a"), ("echo", "b"), ("kb.search", "a")}
    assert views["echo", "b"].smooth_s == 0.020 and views["echo", "b"].last_observed_s_ago == 2
    board.retain({"a"})
    assert {(v.capability, v.instance_id) for v in board.snapshot()} == {("echo", "a"), ("kb.search", "a")}
