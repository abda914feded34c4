"""The record a call carries is shared by every replace() of it, so the outermost stage sees
what routing, retries and the breaker learned further in."""

from __future__ import annotations

import random

from meshwarden.errors import NotSent
from meshwarden.sidecar.call import Call, Reply
from meshwarden.sidecar.stages import breaker, retries, routing
from tests.unit.sidecar.fakes import FakeClock, Recorder, call, catalog_of, instance


async def test_routing_and_breaker_fill_the_record_the_caller_holds() -> None:
    board = breaker.BreakerBoard()
    rec = Recorder()
    stage = routing.Routing(
        breaker.Breaker(rec, board), catalog_of(instance("b1", "billing", "2.0.0")), random.Random(1)
    )
    outer = call()
    await stage(outer)
    assert rec.calls[0] is not outer  # routing replaced it ...
    assert outer.record is rec.calls[0].record  # ... and both share one record
    assert outer.record.target is not None and outer.record.target.instance_id == "b1"
    assert outer.record.attempt == 1
    assert outer.record.breaker_state == "closed"


async def test_the_record_names_the_last_attempt_after_a_retry() -> None:
    seen: list[str] = []

    async def first_fails(c: Call) -> Reply:
        target = c.target
        assert target is not None
        seen.append(target.instance_id)
        if len(seen) == 1:
            raise NotSent("connection refused")
        return Reply(b"{}", target.instance_id, target.agent, "")

    catalog = catalog_of(instance("b1", "billing", "2.0.0"), instance("b2", "billing", "2.0.0"))
    inner = routing.Routing(first_fails, catalog, random.Random(3))
    settings = retries.RetrySettings(max_attempts=3, budget_ratio=0.2)

    async def no_sleep(_: float) -> None:
        return None

    stage = retries.Retries(inner, settings, FakeClock(), random.Random(3), sleep=no_sleep)
    outer = call()
    await stage(outer)
    assert outer.record.attempt == 2
    assert outer.record.target is not None and outer.record.target.instance_id == seen[-1] != seen[0]


def test_records_are_not_shared_between_calls() -> None:
    assert call().record is not call().record
