"""Retries: only safe failures are resent, each attempt re-routed away from the failed
instance, within the attempts, the deadline and the budget."""

from __future__ import annotations

import random

import grpc
import pytest

from meshwarden.errors import (
    AgentFailed,
    DeadlineExceeded,
    MeshError,
    NotRegistered,
    NotSent,
    PeerIdentityMismatch,
    PeerUnavailable,
    PolicyDenied,
)
from meshwarden.sidecar.call import Call, Reply
from meshwarden.sidecar.stages import retries, routing
from tests.unit.sidecar.fakes import FakeClock, call, catalog_of, instance


class Script:
    """Inner handler: fails the first attempts with the given errors, then answers."""

    def __init__(self, *failures: MeshError) -> None:
        self.failures = list(failures)
        self.calls: list[Call] = []

    async def __call__(self, c: Call) -> Reply:
        self.calls.append(c)
        if self.failures:
            raise self.failures.pop(0)
        return Reply(b"{}", c.target.instance_id if c.target else "", "", "")


def stage(
    inner: Script, clock: FakeClock, max_attempts: int = 3, ratio: float = 0.2, min_per_s: float = 10.0
) -> tuple[retries.Retries, list[float]]:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        clock.now += s

    settings = retries.RetrySettings(max_attempts=max_attempts, budget_ratio=ratio, min_per_s=min_per_s)
    return retries.Retries(inner, settings, clock, random.Random(7), sleep), slept


async def test_a_call_that_never_started_is_retried_without_a_key() -> None:
    clock = FakeClock()
    inner = Script(NotSent("refused"), NotRegistered("not yet"))
    s, slept = stage(inner, clock)
    await s(call())
    assert [c.attempt for c in inner.calls] == [1, 2, 3]
    assert len(slept) == 2 and 0 <= slept[0] <= 0.025 and 0 <= slept[1] <= 0.05


async def test_an_unreachable_call_is_retried_only_with_a_key() -> None:
    clock = FakeClock()
    inner = Script(PeerUnavailable("reset mid-call"))
    with pytest.raises(PeerUnavailable):
        await stage(inner, clock)[0](call())
    assert len(inner.calls) == 1
    inner = Script(PeerUnavailable("reset mid-call"), DeadlineExceeded("slow"))
    await stage(inner, clock)[0](call(idempotency_key="k1"))
    assert len(inner.calls) == 3


@pytest.mark.parametrize(
    "err", [PolicyDenied("no"), AgentFailed(grpc.StatusCode.INTERNAL, "boom")], ids=["refused", "agent_failed"]
)
async def test_refusals_and_agent_failures_are_never_retried(err: MeshError) -> None:
    inner = Script(err)
    with pytest.raises(type(err)):
        await stage(inner, FakeClock())[0](call(idempotency_key="k1"))
    assert len(inner.calls) == 1


async def test_a_keyed_call_the_agent_answered_unavailable_is_retried_elsewhere_an_unkeyed_one_is_not() -> None:
    inner = Script(AgentFailed(grpc.StatusCode.UNAVAILABLE, "model provider down"))
    await stage(inner, FakeClock())[0](call(idempotency_key="k1"))
    assert [c.attempt for c in inner.calls] == [1, 2]
    inner = Script(AgentFailed(grpc.StatusCode.UNAVAILABLE, "model provider down"))
    with pytest.raises(AgentFailed):
        await stage(inner, FakeClock())[0](call())
    assert len(inner.calls) == 1


async def test_attempts_are_capped() -> None:
    inner = Script(*[PeerIdentityMismatch("who?") for _ in range(5)])
    with pytest.raises(PeerIdentityMismatch):
        await stage(inner, FakeClock(), max_attempts=2)[0](call())
    assert len(inner.calls) == 2


async def test_no_retry_whose_backoff_would_cross_the_deadline() -> None:
    clock = FakeClock()
    inner = Script(NotSent("refused"), NotSent("refused"))
    with pytest.raises(NotSent):
        await stage(inner, clock)[0](call(deadline=clock.now + 0.000001))
    assert len(inner.calls) == 1


async def test_the_budget_bounds_retries_to_a_share_of_calls() -> None:
    clock = FakeClock()
    inner = Script()
    s, _ = stage(inner, clock, max_attempts=2, ratio=0.5, min_per_s=1.0)
    retried = 0
    for _ in range(10):  # the clock barely moves: only the floor (1) plus 0.5 per call
        inner.failures = [NotSent("refused")]
        before = len(inner.calls)
        try:
            await s(call())
        except NotSent:
            pass
        retried += len(inner.calls) - before - 1
    assert 4 <= retried <= 6  # 1 + 10 * 0.5 tokens, at most, and not nothing


async def test_each_attempt_is_routed_away_from_the_instance_that_failed() -> None:
    catalog = catalog_of(instance("a", "billing", "1.0.0"), instance("b", "billing", "1.0.0"))

    class RefusedOnce(Script):  # a last hop: its error names the instance it failed on
        async def __call__(self, c: Call) -> Reply:
            if not self.calls:
                self.failures = [NotSent("refused", instance_id=c.target.instance_id if c.target else "")]
            return await super().__call__(c)

    inner = RefusedOnce()
    clock = FakeClock()
    s, _ = stage(inner, clock)
    chain = retries.Retries(
        routing.Routing(inner, catalog, random.Random(1)), s._settings, clock, random.Random(1), s._sleep
    )
    reply = await chain(call())
    first, second = inner.calls
    assert first.target is not None and second.target is not None
    assert second.target.instance_id != first.target.instance_id == next(iter(second.avoid_instances))
    assert reply.instance_id == second.target.instance_id
