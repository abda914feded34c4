"""Idempotency: a key runs once per caller and capability; repeats get the first reply or wait
for it; failures are forgotten; entries expire and are bounded."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from meshwarden.errors import PeerUnavailable
from meshwarden.sidecar.call import Call, Caller, Reply
from meshwarden.sidecar.stages.idempotency import Idempotency
from tests.unit.sidecar.fakes import FakeClock, call


class Agent:
    def __init__(self) -> None:
        self.runs = 0
        self.fail_next = False
        self.hold: asyncio.Event | None = None

    async def __call__(self, c: Call) -> Reply:
        self.runs += 1
        if self.hold is not None:
            await self.hold.wait()
        if self.fail_next:
            self.fail_next = False
            raise PeerUnavailable("agent gone")
        return Reply(f'{{"run":{self.runs}}}'.encode(), "i1", "billing", "1.0.0")


def keyed(key: str = "k1", **kw: object) -> Call:
    return replace(call(idempotency_key=key), caller=Caller("caller", "caller-1", "spiffe://mesh/agent/caller"), **kw)  # type: ignore[arg-type]


async def test_a_repeat_gets_the_first_reply_without_running_again() -> None:
    agent = Agent()
    stage = Idempotency(agent, 600, FakeClock())
    first = await stage(keyed())
    assert await stage(keyed()) == first and agent.runs == 1
    await stage(keyed("k2"))
    await stage(replace(keyed(), capability="other"))
    await stage(replace(keyed(), caller=Caller("evil", "e-1", "spiffe://mesh/agent/evil")))
    assert agent.runs == 4  # another key, capability or caller is another call


async def test_calls_without_a_key_always_run() -> None:
    agent = Agent()
    stage = Idempotency(agent, 600, FakeClock())
    await stage(call())
    await stage(call())
    assert agent.runs == 2


async def test_a_repeat_in_flight_waits_for_the_first() -> None:
    agent = Agent()
    agent.hold = asyncio.Event()
    stage = Idempotency(agent, 600, FakeClock())
    both = asyncio.gather(stage(keyed()), stage(keyed()))
    await asyncio.sleep(0.01)
    agent.hold.set()
    first, second = await both
    assert first == second and agent.runs == 1


async def test_a_failure_is_forgotten_and_a_waiting_repeat_runs_it() -> None:
    agent = Agent()
    agent.hold, agent.fail_next = asyncio.Event(), True
    stage = Idempotency(agent, 600, FakeClock())
    both = asyncio.gather(stage(keyed()), stage(keyed()), return_exceptions=True)
    await asyncio.sleep(0.01)
    agent.hold.set()
    first, second = await both
    assert isinstance(first, PeerUnavailable) and isinstance(second, Reply) and agent.runs == 2


async def test_entries_expire_and_are_bounded() -> None:
    agent, clock = Agent(), FakeClock()
    stage = Idempotency(agent, 10, clock, max_entries=2)
    await stage(keyed("a"))
    clock.now += 11
    await stage(keyed("a"))
    assert agent.runs == 2
    await stage(keyed("b"))
    await stage(keyed("c"))  # "a" is the least recently used: dropped
    await stage(keyed("a"))
    assert agent.runs == 5


class BigAgent:
    """Answers each call with a result of `size` bytes."""

    def __init__(self, size: int) -> None:
        self.size, self.runs = size, 0

    async def __call__(self, c: Call) -> Reply:
        self.runs += 1
        return Reply(b'"' + b"x" * (self.size - 2) + b'"', "i1", "billing", "1.0.0")


async def test_held_results_are_bounded_by_bytes_least_recently_used_first() -> None:
    agent = BigAgent(1024 * 1024)
    stage = Idempotency(agent, 600, FakeClock(), max_bytes=3 * 1024 * 1024 + 4096)
    for key in ("k1", "k2", "k3"):
        await stage(keyed(key))
    await stage(keyed("k1"))  # k1 is now the most recently used
    assert agent.runs == 3 and stage.entries == 3
    await stage(keyed("k4"))  # a fourth MiB does not fit: k2, least recently used, goes
    assert stage.entries == 3 and stage.held_bytes <= 3 * 1024 * 1024 + 4096
    await stage(keyed("k1"))
    await stage(keyed("k3"))
    assert agent.runs == 4  # k1 and k3 still held
    await stage(keyed("k2"))
    assert agent.runs == 5  # k2 was evicted, so it ran again


async def test_a_result_larger_than_the_whole_cache_is_not_held() -> None:
    agent = BigAgent(2 * 1024 * 1024)
    stage = Idempotency(agent, 600, FakeClock(), max_bytes=1024 * 1024)
    await stage(keyed())
    await stage(keyed())
    assert agent.runs == 2 and stage.entries == 0 and stage.held_bytes == 0
