"""Consul's blocking-query rules (features/blocking, "Implementation Details")."""

from __future__ import annotations

import random

from meshwarden.sidecar.discovery.consul_blocking import Backoff, RateLimit, next_index
from tests.unit.sidecar.fakes import FakeClock


def test_an_index_that_went_backwards_restarts_from_zero() -> None:
    assert next_index(previous=120, returned=7) == 0


def test_an_index_below_one_is_never_sent_back() -> None:
    assert next_index(previous=0, returned=0) == 1
    assert next_index(previous=0, returned=-3) == 1


def test_an_index_that_moved_forward_or_stayed_is_used() -> None:
    assert next_index(previous=120, returned=120) == 120
    assert next_index(previous=120, returned=121) == 121
    assert next_index(previous=0, returned=55) == 55


def test_rate_limit_lets_a_burst_of_two_through_then_spaces_requests() -> None:
    clock = FakeClock()
    limit = RateLimit(clock, burst=2, interval_s=1.0)
    assert [limit.delay_s(), limit.delay_s()] == [0.0, 0.0]
    assert limit.delay_s() == 1.0  # a churning result degrades into polling
    clock.now += 1.0
    assert limit.delay_s() == 1.0  # the token it waited for was already spent
    clock.now += 10.0
    assert limit.delay_s() == 0.0  # a quiet spell refills the bucket, up to the burst
    assert limit.delay_s() == 0.0
    assert limit.delay_s() > 0


def test_backoff_grows_with_jitter_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(random.Random(7), first_s=0.2, max_s=1.0)
    delays = [backoff.next_delay_s() for _ in range(6)]
    assert 0.1 <= delays[0] <= 0.3 and 0.2 <= delays[1] <= 0.6
    assert all(0.5 <= d <= 1.5 for d in delays[3:])
    assert len(set(delays)) == len(delays)  # jittered, so sidecars do not retry in step
    backoff.reset()
    assert backoff.next_delay_s() <= 0.3
