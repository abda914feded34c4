"""Inbound: run each idempotency key once, even when its caller stops waiting.

A keyed call, once past every check, is handed to the agent in a task of its own (a run), so
the caller's deadline (the deadline stage, just outside) or its cancelled RPC ends only the
caller's wait: the run finishes and its outcome is kept for the key. A repeat of a finished
call gets the stored reply without reaching the agent; a repeat that arrives while the first
still runs joins it and waits, within its own deadline, for the same outcome. Keys are per
caller SPIFFE ID and capability, so one caller cannot read another's results. Calls without a
key go straight through: they pay nothing here.

What bounds a run: the agent gets until its caller's deadline or `run_limit_s` after the
call arrived, whichever is later; and at most `max_unwaited` runs go on with nobody waiting
for them (beyond that, a run its last caller leaves is cancelled), so callers that give up
at once cannot pile work on the agent.

How a run ended decides what a repeat gets. A reply: that reply, for `ttl_s` (its usage only
once: it was consumed once). The agent's own failure, or a delivery that certainly never
started (the channel to the agent held no connection before or after it): nothing, so a
retry may succeed. An outcome nobody can know (the connection to the agent failed mid-call,
the agent ran past the bound, the run was cancelled, a fault here): the key is in doubt for
`ttl_s`, and repeats are refused with KeyInDoubt (FAILED_PRECONDITION) rather than risk a
second run; whoever waited on the run gets its failure as it was.

Results are kept in memory, at most `max_entries` of them holding at most `max_bytes`
together (least recently used go first; a result can be up to the payload limit, 4 MiB by
default, so a count alone would let the cache grow to gigabytes): a sidecar restart forgets
them and its runs, which a retry after a crash must tolerate.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol

import grpc

from meshwarden.clock import Clock
from meshwarden.errors import DeadlineExceeded, KeyInDoubt, MeshError, NotSent, PeerUnavailable
from meshwarden.sidecar.call import Call, Handler, Layer, Reply

Key = tuple[str, str, str]  # caller SPIFFE ID, capability, idempotency key
AgentConnection = Callable[[], grpc.ChannelConnectivity]  # the channel to the agent, as it is now


class Tracked(Protocol):
    """A run within reach of the operator's kill switches (stages/kill_switch.py, inbound_runs)."""

    def stop_tracking(self) -> None: ...

    @property
    def killed_by_switch(self) -> str: ...


Track = Callable[[Call, "asyncio.Task[None]"], Tracked]  # a kill switch matching the call cancels the task
log = logging.getLogger(__name__)
DoubtReason = Literal["agent_connection_lost", "agent_deadline", "cancelled", "sidecar_fault"]

MAX_ENTRIES = 10_000
MAX_BYTES = 64 * 1024 * 1024  # room for a dozen results at the largest payload limit
MAX_UNWAITED = 1_000
RUN_LIMIT_S = 300.0
_ENTRY_OVERHEAD_BYTES = 200  # the key, the reply's names and ids, the bookkeeping
_NO_CONNECTION = frozenset({grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN})


@dataclass(frozen=True, kw_only=True)
class IdempotencySettings:
    ttl_s: float
    run_limit_s: float = RUN_LIMIT_S
    max_entries: int = MAX_ENTRIES
    max_bytes: int = MAX_BYTES
    max_unwaited: int = MAX_UNWAITED


class _Answer:
    """A run's reply. Its usage goes to the first caller it is handed to: the agent consumed
    it once, and every later copy is a replay that consumed nothing."""

    __slots__ = ("_reply",)

    def __init__(self, reply: Reply) -> None:
        self._reply = reply

    def take(self) -> Reply:
        reply = self._reply
        if reply.usage is not None:
            self._reply = replace(reply, usage=None)
        return reply


@dataclass(frozen=True)
class _Doubt:
    reason: DoubtReason
    what_happened: str
    agent: str


class _Run:
    """One keyed delivery in flight, and the callers waiting for it: a future each, so a
    caller that leaves cancels its own wait, never the run (and costs less than a shield)."""

    __slots__ = ("agent", "key", "task", "tracked", "unwaited", "waiters")

    def __init__(self, key: Key, agent: str) -> None:
        self.key, self.agent = key, agent  # agent: the one it is handed to, as the call names it
        self.task: asyncio.Task[None] | None = None
        self.tracked: Tracked | None = None
        self.waiters: list[asyncio.Future[_Answer]] = []
        self.unwaited = False  # counted among the runs nobody waits for

    def wait(self) -> asyncio.Future[_Answer]:
        waiter: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return waiter

    def answered(self, answer: _Answer) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(answer)

    def failed(self, failure: Exception) -> bool:
        """Hands `failure` to every caller still waiting; False when none was."""
        told = False
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(failure)
                told = True
        return told

    def cancelled(self) -> None:
        for waiter in self.waiters:
            waiter.cancel()


class Idempotency:
    def __init__(
        self, next: Handler, settings: IdempotencySettings, clock: Clock, agent: AgentConnection, track: Track
    ) -> None:
        self._next, self._settings, self._clock, self._agent, self._track = next, settings, clock, agent, track
        # key -> (expires at, a reply or a doubt, size)
        self._done: OrderedDict[Key, tuple[float, _Answer | _Doubt, int]] = OrderedDict()
        self.held_bytes = 0
        self._running: dict[Key, _Run] = {}
        self.unwaited = 0  # runs going on with nobody waiting for them

    async def __call__(self, call: Call) -> Reply:
        if not call.idempotency_key:
            return await self._next(call)
        key = (call.caller.spiffe_id, call.capability, call.idempotency_key)
        known = self._lookup(key)
        if isinstance(known, _Answer):  # a replay consumed nothing: the first run reported the usage
            return known.take()
        if known is not None:
            raise KeyInDoubt(
                idempotency_key=call.idempotency_key,
                capability=call.capability,
                agent=known.agent,
                reason=known.reason,
                what_happened=known.what_happened,
            )
        run = self._running.get(key)
        if run is None:
            run = self._start(key, call)
        elif run.unwaited:  # someone waits for it again
            run.unwaited, self.unwaited = False, self.unwaited - 1
        waiter = run.wait()
        try:
            answer = await waiter
        except asyncio.CancelledError:  # the caller left (deadline, cancelled RPC); the run goes on
            run.waiters.remove(waiter)
            if not run.waiters and self._running.get(key) is run:
                self._left(run)
            raise
        return answer.take()

    def _start(self, key: Key, call: Call) -> _Run:
        run = _Run(key, call.target.agent if call.target is not None else "(this sidecar's)")
        run.task = asyncio.get_running_loop().create_task(self._run(run, call))
        run.tracked = self._track(call, run.task)  # an operator's kill switch stops it, waited for or not
        self._running[key] = run
        return run

    def _left(self, run: _Run) -> None:
        """Nobody waits for `run` any more: it goes on, unless too many already do."""
        if self.unwaited < self._settings.max_unwaited:
            run.unwaited, self.unwaited = True, self.unwaited + 1
            return
        what = f"the sidecar stopped it: {self.unwaited} keyed calls were already running with no caller waiting"
        self._doubt(run.key, _Doubt("cancelled", what, run.agent))
        del self._running[run.key]
        if run.task is not None:
            run.task.cancel()

    async def _run(self, run: _Run, call: Call) -> None:
        """Delivers the call, then hands how it ended to the callers waiting by then."""
        try:
            answer = await self._deliver(run, call)
        except asyncio.CancelledError:
            run.cancelled()
            raise
        except Exception as failure:  # noqa: BLE001 - not swallowed: each waiting caller raises it
            if not run.failed(failure) and not isinstance(failure, MeshError):
                log.error("keyed call to %s failed with no caller waiting", call.capability, exc_info=failure)
            return
        run.answered(answer)

    async def _deliver(self, run: _Run, call: Call) -> _Answer:
        """The agent's reply; a failure first leaves the key in doubt when the agent may have
        run it, and the key is done with (stored, in doubt or forgotten) before anyone hears."""
        limit_s = self._settings.run_limit_s
        bound = self._clock.monotonic() + limit_s
        # The agent is told the caller's deadline (Delivery.caller_timeout_ms); only its RPC gets the bound.
        bounded = replace(call, deadline=bound, caller_deadline=call.deadline) if bound > call.deadline else call
        agent = run.agent
        was_ready = self._agent() is grpc.ChannelConnectivity.READY
        try:
            reply = await self._next(bounded)
        except NotSent:
            raise  # certainly never started: forgotten, a retry may run it
        except PeerUnavailable:
            if was_ready or self._agent() not in _NO_CONNECTION:
                self._doubt(run.key, _Doubt("agent_connection_lost", "the connection to it failed mid-call", agent))
            raise
        except DeadlineExceeded:
            what = f"it ran past its deadline, at least {limit_s:g} s after the call arrived"
            self._doubt(run.key, _Doubt("agent_deadline", what, agent))
            raise
        except MeshError:
            raise  # the agent answered a failure: forgotten, so a retry may succeed
        except asyncio.CancelledError:
            switch = run.tracked.killed_by_switch if run.tracked is not None else ""
            if switch:
                self._doubt(run.key, _Doubt("cancelled", f"an operator's kill switch {switch} stopped it", agent))
            elif self._running.get(run.key) is run:  # else _left cancelled it, and said why
                self._doubt(run.key, _Doubt("cancelled", "the sidecar stopped it before it finished", agent))
            raise
        except Exception:
            self._doubt(run.key, _Doubt("sidecar_fault", "a fault in the callee's sidecar; see its log", agent))
            raise
        finally:
            if run.tracked is not None:
                run.tracked.stop_tracking()
            if self._running.get(run.key) is run:
                del self._running[run.key]
            if run.unwaited:
                run.unwaited, self.unwaited = False, self.unwaited - 1
        answer = _Answer(reply)  # one for the waiting callers and the repeats: its usage is handed out once
        self._remember(run.key, answer, len(reply.result))
        return answer

    def _doubt(self, key: Key, doubt: _Doubt) -> None:
        caller, capability, idempotency_key = key
        log.warning(
            "idempotency key %r of %s for %s is in doubt (%s: %s); repeats are refused for %g s",
            idempotency_key, caller, capability, doubt.reason, doubt.what_happened, self._settings.ttl_s,
        )  # fmt: skip
        self._remember(key, doubt, 0)

    def _lookup(self, key: Key) -> _Answer | _Doubt | None:
        entry = self._done.get(key)
        if entry is None:
            return None
        expires_at, what, size = entry
        if expires_at <= self._clock.monotonic():
            del self._done[key]
            self.held_bytes -= size
            return None
        self._done.move_to_end(key)
        return what

    def _remember(self, key: Key, what: _Answer | _Doubt, result_bytes: int) -> None:
        size = _ENTRY_OVERHEAD_BYTES + sum(map(len, key)) + result_bytes
        if size > self._settings.max_bytes:
            return  # could never be held: a repeat runs again, as after the entry expired
        replaced = self._done.pop(key, None)
        if replaced is not None:
            self.held_bytes -= replaced[2]
        self._done[key] = (self._clock.monotonic() + self._settings.ttl_s, what, size)
        self.held_bytes += size
        while len(self._done) > self._settings.max_entries or self.held_bytes > self._settings.max_bytes:
            _, (_, _, evicted) = self._done.popitem(last=False)
            self.held_bytes -= evicted

    @property
    def entries(self) -> int:
        return len(self._done)

    @property
    def running(self) -> int:
        return len(self._running)


def layer(settings: IdempotencySettings, clock: Clock, agent: AgentConnection, track: Track) -> Layer:
    """`agent`: the state of the channel to the agent, which tells a delivery that certainly
    never started from one that may have; `track`: puts a run within the kill switches' reach."""
    return lambda next: Idempotency(next, settings, clock, agent, track)
