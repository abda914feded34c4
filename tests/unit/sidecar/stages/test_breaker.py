from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field, replace

import grpc
import pytest

from meshwarden.errors import AgentFailed, CircuitOpen, MeshError, PeerUnavailable, PolicyDenied
from meshwarden.sidecar.call import Call, Reply
from meshwarden.sidecar.stages import breaker, routing
from tests.unit.sidecar.fakes import FakeClock, call, catalog_of, instance

RESET_S = 0.05


@dataclass
class Flaky:
    """Inner handler: raises what `failing` holds for an instance, else answers."""

    failing: dict[str, MeshError] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    hold: asyncio.Event | None = None

    async def __call__(self, c: Call) -> Reply:
        assert c.target is not None
        self.calls.append(c.target.instance_id)
        if self.hold is not None:
            await self.hold.wait()
        err = self.failing.get(c.target.instance_id)
        if err is not None:
            raise err
        return Reply(b"{}", c.target.instance_id, c.target.agent, str(c.target.version))


CATALOG = catalog_of(instance("b1", "billing", "2.0.0"), instance("b2", "billing", "2.0.0"))


def to(instance_id: str) -> Call:
    target = next(ep for ep in CATALOG.endpoints("billing.refund") if ep.instance_id == instance_id)
    return replace(call(), target=target)


def down() -> PeerUnavailable:
    return PeerUnavailable("b1 unreachable")


def stage(failures: int = 3) -> tuple[breaker.Breaker, breaker.BreakerBoard, Flaky]:
    board = breaker.BreakerBoard(failures=failures, reset_s=RESET_S)
    inner = Flaky({"b1": down()})
    return breaker.Breaker(inner, board), board, inner


async def test_opens_after_n_consecutive_failures_and_then_fails_fast() -> None:
    cb, board, inner = stage(failures=3)
    for _ in range(3):
        with pytest.raises(PeerUnavailable):  # the failure itself reaches the caller, even the tripping one
            await cb(to("b1"))
    assert board.state("b1") == "open" and not board.allows("b1")
    with pytest.raises(CircuitOpen) as info:
        await cb(to("b1"))
    assert len(inner.calls) == 3  # the fourth never went out
    assert info.value.code == grpc.StatusCode.UNAVAILABLE and info.value.kind == "circuit_open"
    assert (
        "b1" in info.value.message and "billing 2.0.0" in info.value.message and "trial call in" in info.value.message
    )
    assert board.state("b2") == "closed" and (await cb(to("b2"))).instance_id == "b2"


async def test_a_success_resets_the_consecutive_count() -> None:
    cb, board, inner = stage(failures=3)
    for _ in range(2):
        with pytest.raises(PeerUnavailable):
            await cb(to("b1"))
    del inner.failing["b1"]
    await cb(to("b1"))
    inner.failing["b1"] = down()
    for _ in range(2):
        with pytest.raises(PeerUnavailable):
            await cb(to("b1"))
    assert board.state("b1") == "closed"


@pytest.mark.parametrize(
    "err",
    [
        PolicyDenied("no"),
        AgentFailed(grpc.StatusCode.INVALID_ARGUMENT, "bad order id"),
        AgentFailed(grpc.StatusCode.NOT_FOUND, "no such order"),
    ],
)
async def test_refusals_and_business_errors_never_count(err: MeshError) -> None:
    cb, board, inner = stage(failures=2)
    inner.failing["b1"] = err
    for _ in range(5):
        with pytest.raises(type(err)):
            await cb(to("b1"))
    assert board.state("b1") == "closed"


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE])
async def test_agent_internal_or_unavailable_counts(code: grpc.StatusCode) -> None:
    cb, board, inner = stage(failures=2)
    inner.failing["b1"] = AgentFailed(code, "crashed")
    for _ in range(2):
        with pytest.raises(AgentFailed):
            await cb(to("b1"))
    assert board.state("b1") == "open"


async def test_half_opens_after_reset_lets_one_trial_through_and_closes_on_success() -> None:
    cb, board, inner = stage(failures=1)
    with pytest.raises(PeerUnavailable):
        await cb(to("b1"))
    assert not board.allows("b1")
    await asyncio.sleep(RESET_S * 1.5)
    assert board.allows("b1")
    del inner.failing["b1"]
    inner.hold = asyncio.Event()
    trial = asyncio.create_task(cb(to("b1")))
    await asyncio.sleep(0.01)
    assert board.state("b1") == "half-open" and not board.allows("b1")
    with pytest.raises(CircuitOpen):  # only one trial at a time
        await cb(to("b1"))
    inner.hold.set()
    assert (await trial).instance_id == "b1"
    assert board.state("b1") == "closed" and board.allows("b1")
    inner.hold = None
    assert (await cb(to("b1"))).instance_id == "b1"


async def test_a_failed_trial_opens_again() -> None:
    cb, board, _ = stage(failures=1)
    with pytest.raises(PeerUnavailable):
        await cb(to("b1"))
    await asyncio.sleep(RESET_S * 1.5)
    with pytest.raises(PeerUnavailable):
        await cb(to("b1"))
    assert board.state("b1") == "open" and not board.allows("b1")


async def test_routing_skips_open_instances_while_others_are_available() -> None:
    board = breaker.BreakerBoard(failures=2, reset_s=60)
    inner = Flaky({"b1": down()})
    stack = routing.Routing(breaker.Breaker(inner, board), CATALOG, random.Random(3), board)
    failures = 0
    for _ in range(40):
        try:
            await stack(call())
        except PeerUnavailable:
            failures += 1
    assert failures == 2 and board.states() == {"b1": "open", "b2": "closed"}
    assert inner.calls.count("b1") == 2 and inner.calls[-10:] == ["b2"] * 10


async def test_when_every_instance_is_open_the_caller_gets_circuit_open() -> None:
    board = breaker.BreakerBoard(failures=1, reset_s=60)
    inner = Flaky({"b1": down(), "b2": PeerUnavailable("b2 unreachable")})
    stack = routing.Routing(breaker.Breaker(inner, board), CATALOG, random.Random(3), board)
    seen: list[type] = []
    for _ in range(10):
        with pytest.raises(MeshError) as info:
            await stack(call())
        seen.append(type(info.value))
    assert seen.count(PeerUnavailable) == 2 and seen[-1] is CircuitOpen


async def alternate(cb: breaker.Breaker, inner: Flaky, clock: FakeClock, calls: int, every: int = 2) -> int:
    """`calls` calls to b1, every `every`th one failing; returns how many failed."""
    failed = 0
    for n in range(calls):
        clock.now += 0.1
        if n % every == 0:
            inner.failing["b1"] = down()
        else:
            inner.failing.pop("b1", None)
        try:
            await cb(to("b1"))
        except PeerUnavailable:
            failed += 1
    return failed


async def test_a_failure_rate_over_the_window_opens_a_breaker_consecutive_counting_never_would() -> None:
    clock = FakeClock()
    board = breaker.BreakerBoard(
        failures=5, reset_s=60, failure_rate=0.5, window_s=10.0, min_calls=10, now=clock.monotonic
    )
    inner = Flaky()
    cb = breaker.Breaker(inner, board)
    await alternate(cb, inner, clock, 8)  # 4 of 8 failed, but fewer calls than min_calls
    assert board.state("b1") == "closed"
    assert board.window("b1").failures == 4 and board.window("b1").calls == 8
    await alternate(cb, inner, clock, 2)  # the 9th call fails: 5 of 9; the 10th succeeds
    await alternate(cb, inner, clock, 1)  # the 11th fails: 6 of 11 = 55%
    assert board.state("b1") == "open"
    assert board.reason("b1") == "55% failures over 10 s (6 of 11 calls)"
    with pytest.raises(CircuitOpen) as info:
        await cb(to("b1"))
    assert "55% failures over 10 s" in info.value.message
    (view,) = board.snapshot()
    assert view.instance_id == "b1" and view.state == "open" and view.reason.startswith("55%")
    assert (view.window_calls, view.window_failures) == (0, 0)  # the window starts afresh on opening


async def test_a_rate_below_the_threshold_or_failures_gone_from_the_window_do_not_open() -> None:
    clock = FakeClock()
    board = breaker.BreakerBoard(
        failures=5, reset_s=60, failure_rate=0.5, window_s=10.0, min_calls=10, now=clock.monotonic
    )
    inner = Flaky()
    cb = breaker.Breaker(inner, board)
    await alternate(cb, inner, clock, 30, every=3)  # 33 %
    assert board.state("b1") == "closed"
    inner.failing["b1"] = down()
    for _ in range(4):  # 4 more failures, spread over more than the window
        clock.now += 4.0
        with pytest.raises(PeerUnavailable):
            await cb(to("b1"))
    assert board.state("b1") == "closed" and board.window("b1").calls < 10


async def test_consecutive_failures_give_their_own_reason() -> None:
    cb, board, _ = stage(failures=3)
    for _ in range(3):
        with pytest.raises(PeerUnavailable):
            await cb(to("b1"))
    assert board.reason("b1") == "3 consecutive failures"
    assert board.reason("b2") == ""
