from __future__ import annotations

import asyncio

import pytest

from meshwarden.errors import DeadlineExceeded, PayloadTooLarge
from meshwarden.sidecar.call import Call, Reply
from meshwarden.sidecar.stages import deadline, payload_limit
from tests.unit.sidecar.fakes import FakeClock, Recorder, call


async def test_payload_over_limit_is_refused_with_sizes() -> None:
    rec = Recorder()
    with pytest.raises(PayloadTooLarge) as info:
        await payload_limit.PayloadLimit(rec, 10)(call(payload=b'{"amount": 12345}'))
    assert "17 bytes" in info.value.message and "10 bytes" in info.value.message and rec.calls == []


async def test_payload_at_limit_passes() -> None:
    rec = Recorder()
    await payload_limit.PayloadLimit(rec, 14)(call(payload=b'{"amount": 50}'))
    assert len(rec.calls) == 1


async def test_passed_deadline_is_refused_before_sending() -> None:
    rec, clock = Recorder(), FakeClock(now=100.0)
    with pytest.raises(DeadlineExceeded):
        await deadline.Deadline(rec, clock)(call(deadline=99.0))
    assert rec.calls == []


async def test_slow_inner_call_is_cut_at_the_deadline() -> None:
    clock = FakeClock(now=100.0)

    async def slow(c: Call) -> Reply:
        await asyncio.sleep(30)
        raise AssertionError("the deadline stage should have cancelled this")

    with pytest.raises(DeadlineExceeded) as info:
        await deadline.Deadline(slow, clock)(call(deadline=100.05))
    assert "billing.refund" in info.value.message
