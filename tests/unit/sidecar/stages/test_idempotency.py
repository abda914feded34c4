"""Idempotency: a key runs once per caller and capability, even when its caller stops waiting;
repeats get the first reply or join the run in flight; answered failures are forgotten, an
outcome nobody can know leaves the key in doubt; entries expire and are bounded."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import grpc
import pytest

from meshwarden.errors import AgentFailed, DeadlineExceeded, KeyInDoubt, NotSent, PeerUnavailable
from meshwarden.sidecar.call import Call, Caller, Reply
from meshwarden.sidecar.stages.deadline import Deadline
from meshwarden.sidecar.stages.idempotency import Idempotency, IdempotencySettings, Tracked
from meshwarden.usage import Usage
from tests.unit.sidecar.fakes import FakeClock, call

READY, FAILING = grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE


class Agent:
    def __init__(self) -> None:
        self.runs = 0
        self.fail_with: Exception | None = None
        self.hold: asyncio.Event | None = None
        self.deadlines: list[float] = []
        self.caller_deadlines: list[float] = []
        self.usage: Usage | None = None

    async def __call__(self, c: Call) -> Reply:
        self.runs += 1
        run = self.runs
        self.deadlines.append(c.deadline)
        self.caller_deadlines.append(c.caller_deadline)
        if self.hold is not None:
            await self.hold.wait()
        if self.fail_with is not None:
            failure, self.fail_with = self.fail_with, None
            raise failure
        return Reply(f'{{"run":{run}}}'.encode(), "i1", "billing", "1.0.0", usage=self.usage)


class Connection:
    """The state of the channel to the agent, as the test sets it."""

    def __init__(self) -> None:
        self.state = READY

    def __call__(self) -> grpc.ChannelConnectivity:
        return self.state


class Switches:
    """Kill switches as the stage sees them: which runs are tracked, and a kill of one."""

    def __init__(self) -> None:
        self.tracked: dict[str, tuple[asyncio.Task[None], Tracked]] = {}

    def __call__(self, c: Call, task: asyncio.Task[None]) -> Tracked:
        switches = self

        class One:
            killed_by_switch = ""

            def stop_tracking(self) -> None:
                switches.tracked.pop(c.idempotency_key, None)

        one = One()
        self.tracked[c.idempotency_key] = (task, one)
        return one

    def kill(self, key: str, switch_id: str) -> None:
        task, one = self.tracked[key]
        one.killed_by_switch = switch_id  # type: ignore[misc]
        task.cancel()


def stage(
    agent: object, clock: FakeClock | None = None, connection: Connection | None = None, **kw: object
) -> Idempotency:
    switches = kw.pop("switches", None) or Switches()
    settings = IdempotencySettings(ttl_s=kw.pop("ttl_s", 600), **kw)  # type: ignore[arg-type]
    return Idempotency(agent, settings, clock or FakeClock(), connection or Connection(), switches)  # type: ignore[arg-type]


def keyed(key: str = "k1", **kw: object) -> Call:
    return replace(call(idempotency_key=key), caller=Caller("caller", "caller-1", "spiffe://mesh/agent/caller"), **kw)  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_repeat_gets_the_first_reply_without_running_again() -> None:
    agent = Agent()
    once = stage(agent)
    first = await once(keyed())
    assert await once(keyed()) == first and agent.runs == 1
    await once(keyed("k2"))
    await once(replace(keyed(), capability="other"))
    await once(replace(keyed(), caller=Caller("evil", "e-1", "spiffe://mesh/agent/evil")))
    assert agent.runs == 4  # another key, capability or caller is another call


async def test_calls_without_a_key_always_run_and_are_not_shielded() -> None:
    agent = Agent()
    once = stage(agent)
    await once(call())
    await once(call())
    assert agent.runs == 2
    agent.hold = asyncio.Event()
    unkeyed = asyncio.create_task(once(call()))
    await settle()
    unkeyed.cancel()
    await settle()
    assert once.running == 0 and unkeyed.cancelled()


async def test_a_repeat_in_flight_joins_the_first() -> None:
    agent = Agent()
    agent.hold = asyncio.Event()
    once = stage(agent)
    both = asyncio.gather(once(keyed()), once(keyed()))
    await settle()
    agent.hold.set()
    first, second = await both
    assert first == second and agent.runs == 1


async def test_a_run_its_caller_gave_up_on_finishes_and_a_retry_gets_its_result() -> None:
    agent, clock = Agent(), FakeClock()
    agent.hold, agent.usage = asyncio.Event(), Usage(model="m", cost_micro_usd=7)
    once = stage(agent, clock, run_limit_s=300)
    first = asyncio.create_task(once(keyed(deadline=clock.now + 1)))
    await settle()
    first.cancel()  # the deadline stage, or the caller's RPC, gave up
    with pytest.raises(asyncio.CancelledError):
        await first
    assert once.running == 1 and once.unwaited == 1
    assert agent.deadlines == [clock.now + 300]  # the agent's RPC gets the bound, not the caller's 1 s
    assert agent.caller_deadlines == [clock.now + 1]  # which it is told, for itself and its nested calls
    retry = asyncio.create_task(once(keyed(deadline=clock.now + 5)))
    await settle()
    assert once.unwaited == 0  # someone waits for it again
    agent.hold.set()
    reply = await retry
    assert reply.result == b'{"run":1}' and reply.usage == Usage(model="m", cost_micro_usd=7)  # the first to get it
    again = await once(keyed())
    assert again.result == reply.result and again.usage is None and agent.runs == 1  # a replay consumed nothing


async def test_behind_the_deadline_stage_the_caller_times_out_and_the_run_goes_on() -> None:
    agent, clock = Agent(), FakeClock()
    agent.hold = asyncio.Event()
    inner = stage(agent, clock)
    timed = Deadline(inner, clock)
    with pytest.raises(DeadlineExceeded):
        await timed(keyed(deadline=clock.now + 0.01))  # the real timeout: the fake clock only says how long
    assert inner.running == 1 and agent.runs == 1
    agent.hold.set()
    await settle()
    assert inner.running == 0 and (await timed(keyed(deadline=clock.now + 1))).result == b'{"run":1}'
    assert agent.runs == 1


async def test_an_answered_failure_reaches_every_waiter_and_is_forgotten() -> None:
    agent = Agent()
    agent.hold, agent.fail_with = asyncio.Event(), AgentFailed(grpc.StatusCode.ABORTED, "no")
    once = stage(agent)
    both = asyncio.gather(once(keyed()), once(keyed()), return_exceptions=True)
    await settle()
    agent.hold.set()
    first, second = await both
    assert isinstance(first, AgentFailed) and second is first and agent.runs == 1  # the same outcome
    assert (await once(keyed())).result == b'{"run":2}'  # a retry may succeed


async def test_a_delivery_that_never_connected_is_forgotten() -> None:
    agent, connection = Agent(), Connection()
    connection.state = FAILING
    agent.fail_with = PeerUnavailable("agent not answering")
    once = stage(agent, connection=connection)
    with pytest.raises(PeerUnavailable):
        await once(keyed())
    agent.fail_with = NotSent("refused")
    with pytest.raises(NotSent):
        await once(keyed())
    assert (await once(keyed())).result == b'{"run":3}'


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (PeerUnavailable("connection reset"), "agent_connection_lost"),
        (DeadlineExceeded("agent did not finish"), "agent_deadline"),
        (RuntimeError("a bug"), "sidecar_fault"),
    ],
)
async def test_an_outcome_nobody_can_know_leaves_the_key_in_doubt(failure: Exception, reason: str) -> None:
    agent = Agent()
    agent.fail_with = failure
    once = stage(agent)
    with pytest.raises(type(failure)):  # whoever waited gets the failure as it was
        await once(keyed())
    with pytest.raises(KeyInDoubt) as info:
        await once(keyed())
    err = info.value
    assert (err.idempotency_key, err.capability, err.reason) == ("k1", "billing.refund", reason)
    assert err.code is grpc.StatusCode.FAILED_PRECONDITION and "'k1'" in err.message and "new key" in err.message
    assert agent.runs == 1
    assert (await once(keyed("k2"))).result == b'{"run":2}'  # other keys run


async def test_a_key_in_doubt_crosses_the_wire_with_its_data() -> None:
    sent = KeyInDoubt(
        idempotency_key="k1", capability="billing.refund", agent="billing", reason="agent_deadline", what_happened="x"
    )
    back = KeyInDoubt.from_wire(sent.kind, sent.status_code(), sent.message, sent.metadata())
    assert isinstance(back, KeyInDoubt) and back.message == sent.message
    assert (back.idempotency_key, back.capability, back.agent, back.reason) == (
        "k1",
        "billing.refund",
        "billing",
        "agent_deadline",
    )


async def test_runs_nobody_waits_for_are_bounded_and_the_one_over_is_cancelled_in_doubt() -> None:
    agent = Agent()
    agent.hold = asyncio.Event()
    once = stage(agent, max_unwaited=1)
    callers = [asyncio.create_task(once(keyed(key))) for key in ("a", "b")]
    await settle()
    for caller in callers:
        caller.cancel()
    await settle()
    assert once.unwaited == 1 and once.running == 1
    with pytest.raises(KeyInDoubt) as info:
        await once(keyed("b"))
    assert info.value.reason == "cancelled"
    agent.hold.set()
    assert (await once(keyed("a"))).result == b'{"run":1}' and agent.runs == 2


async def test_entries_expire_and_are_bounded() -> None:
    agent, clock = Agent(), FakeClock()
    once = stage(agent, clock, ttl_s=10, max_entries=2)
    await once(keyed("a"))
    clock.now += 11
    await once(keyed("a"))
    assert agent.runs == 2
    await once(keyed("b"))
    await once(keyed("c"))  # "a" is the least recently used: dropped
    await once(keyed("a"))
    assert agent.runs == 5


async def test_a_doubt_expires_like_a_result() -> None:
    agent, clock = Agent(), FakeClock()
    agent.fail_with = PeerUnavailable("connection reset")
    once = stage(agent, clock, ttl_s=10)
    with pytest.raises(PeerUnavailable):
        await once(keyed())
    with pytest.raises(KeyInDoubt):
        await once(keyed())
    clock.now += 11
    assert (await once(keyed())).result == b'{"run":2}'


class BigAgent:
    """Answers each call with a result of `size` bytes."""

    def __init__(self, size: int) -> None:
        self.size, self.runs = size, 0

    async def __call__(self, c: Call) -> Reply:
        self.runs += 1
        return Reply(b'"' + b"x" * (self.size - 2) + b'"', "i1", "billing", "1.0.0")


async def test_held_results_are_bounded_by_bytes_least_recently_used_first() -> None:
    agent = BigAgent(1024 * 1024)
    once = stage(agent, max_bytes=3 * 1024 * 1024 + 4096)
    for key in ("k1", "k2", "k3"):
        await once(keyed(key))
    await once(keyed("k1"))  # k1 is now the most recently used
    assert agent.runs == 3 and once.entries == 3
    await once(keyed("k4"))  # a fourth MiB does not fit: k2, least recently used, goes
    assert once.entries == 3 and once.held_bytes <= 3 * 1024 * 1024 + 4096
    await once(keyed("k1"))
    await once(keyed("k3"))
    assert agent.runs == 4  # k1 and k3 still held
    await once(keyed("k2"))
    assert agent.runs == 5  # k2 was evicted, so it ran again


async def test_a_result_larger_than_the_whole_cache_is_not_held() -> None:
    agent = BigAgent(2 * 1024 * 1024)
    once = stage(agent, max_bytes=1024 * 1024)
    await once(keyed())
    await once(keyed())
    assert agent.runs == 2 and once.entries == 0 and once.held_bytes == 0


async def test_a_fault_in_a_run_nobody_waits_for_is_logged_and_leaves_the_key_in_doubt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = Agent()
    agent.hold, agent.fail_with = asyncio.Event(), RuntimeError("a bug after the agent answered")
    once = stage(agent)
    left = asyncio.create_task(once(keyed()))
    await settle()
    left.cancel()
    await settle()
    agent.hold.set()
    await settle()
    assert once.running == 0 and once.unwaited == 0
    assert "failed with no caller waiting" in caplog.text and "a bug after the agent answered" in caplog.text
    with pytest.raises(KeyInDoubt) as info:
        await once(keyed())
    assert info.value.reason == "sidecar_fault"


async def test_a_kill_switch_reaches_a_run_its_caller_left_and_the_key_is_in_doubt() -> None:
    agent, switches = Agent(), Switches()
    agent.hold = asyncio.Event()
    once = stage(agent, switches=switches)
    left = asyncio.create_task(once(keyed()))
    await settle()
    left.cancel()
    await settle()
    assert once.unwaited == 1 and "k1" in switches.tracked
    switches.kill("k1", "ks-7")
    await settle()
    assert once.running == 0 and once.unwaited == 0 and not switches.tracked
    with pytest.raises(KeyInDoubt) as info:
        await once(keyed())
    assert info.value.reason == "cancelled" and "kill switch ks-7" in info.value.message
