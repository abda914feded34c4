"""Fail fast on an instance whose recent calls keep failing: one pybreaker breaker per instance.

pybreaker's `call_async` needs Tornado; `with cb.calling(): await ...` does not, and its
generator-based context manager records the outcome when the `await` finishes. pybreaker
lets every call through while half-open, so the board admits one trial call at a time itself.

Only outages count: Unreachable errors and AgentFailed with INTERNAL or UNAVAILABLE. A refusal
(policy, bad payload) or an agent's own business error is no outage (`exclude=`).

Two ways to open: `failures` consecutive outages (pybreaker's own count), or a failure rate
over a window (pybreaker 1.4 has none): the board keeps a FailureWindow per instance and opens
the pybreaker breaker itself when at least `min_calls` calls in the last `window_s` seconds
saw a share of outages of at least `failure_rate`. pybreaker keeps the state either way
(closed, open, half-open and its trial call). Each opening keeps its reason for people ("5
consecutive failures", "42% failures over 10 s (21 of 50 calls)"); `snapshot()` gives the
whole board as plain data (metrics, health reports).
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pybreaker

from meshwarden.errors import AgentFailed, CircuitOpen, MeshError, Unreachable
from meshwarden.sidecar.call import Call, Handler, Layer, Reply
from meshwarden.sidecar.failure_window import FailureWindow, WindowCounts

log = logging.getLogger(__name__)

_OUTAGE_CODES = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE})


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says the instance is failing (counts toward opening its breaker)."""
    if isinstance(exc, Unreachable):
        return True
    return isinstance(exc, AgentFailed) and exc.agent_code in _OUTAGE_CODES


def _not_an_outage(exc: BaseException) -> bool:
    return not is_outage(exc)


class _Transitions(pybreaker.CircuitBreakerListener):
    """Keeps why each breaker opened, logs every change of state, and starts the failure
    window afresh on each change (old failures must not reopen a breaker that just closed)."""

    def __init__(self, board: BreakerBoard) -> None:
        self._board = board
        self.last_failure: dict[str, str] = {}

    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        self.last_failure[cb.name or ""] = f"{type(exc).__name__}: {exc}"

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        name, old = cb.name or "", old_state.name if old_state else "none"
        board = self._board
        window = board._windows.get(name)
        if window is not None:
            window.clear()
        if new_state.name == pybreaker.STATE_OPEN:
            reason = board._rate_trips.pop(name, "")
            if not reason:
                reason = (
                    "the trial call failed"
                    if old == pybreaker.STATE_HALF_OPEN
                    else f"{cb.fail_counter} consecutive failures"
                )
            board._reasons[name] = reason
            log.warning(
                "circuit opened for instance %s (was %s) after %s; last: %s; trial call in %.1f s",
                name,
                old,
                reason,
                self.last_failure.get(name, "?"),
                cb.reset_timeout,
            )
        elif new_state.name == pybreaker.STATE_HALF_OPEN:
            log.info(
                "circuit half-open for instance %s: %.1f s passed, one trial call goes through", name, cb.reset_timeout
            )
        else:
            board._reasons.pop(name, None)
            log.info("circuit closed for instance %s: the trial call succeeded", name)


@dataclass(frozen=True, slots=True)
class BreakerView:
    """One instance's breaker as plain data, for metrics and health reports."""

    instance_id: str
    state: str  # "closed", "open", "half-open"
    reason: str  # why it opened ("" while closed)
    consecutive_failures: int
    window_failures: int
    window_calls: int


class BreakerBoard:
    """The breakers of this sidecar, by instance id; shared by routing (which avoids open
    instances while others are live) and the breaker stage (which drives them)."""

    def __init__(
        self,
        failures: int = 5,
        reset_s: float = 5.0,
        *,
        failure_rate: float = 0.5,
        window_s: float = 10.0,
        min_calls: int = 20,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures, self.reset_s = failures, reset_s
        self.failure_rate, self.window_s, self.min_calls = failure_rate, window_s, min_calls
        self._now = now
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}
        self._windows: dict[str, FailureWindow] = {}
        self._trials: set[str] = set()  # instances with a half-open trial call in flight
        self._reasons: dict[str, str] = {}  # why each open breaker opened
        self._rate_trips: dict[str, str] = {}  # set just before the board opens a breaker itself
        self._transitions = _Transitions(self)

    def breaker(self, instance_id: str) -> pybreaker.CircuitBreaker:
        cb = self._breakers.get(instance_id)
        if cb is None:
            cb = pybreaker.CircuitBreaker(
                fail_max=self.failures,
                reset_timeout=self.reset_s,
                exclude=[_not_an_outage],
                listeners=[self._transitions],
                name=instance_id,
                throw_new_error_on_trip=False,  # the failure that tripped it reaches the caller as it was
            )
            self._breakers[instance_id] = cb
        return cb

    def state(self, instance_id: str) -> str:
        cb = self._breakers.get(instance_id)
        return cb.current_state if cb is not None else pybreaker.STATE_CLOSED

    def states(self) -> dict[str, str]:
        return {instance_id: cb.current_state for instance_id, cb in self._breakers.items()}

    def retry_in_s(self, instance_id: str) -> float:
        """Seconds until an open breaker lets a trial call through (0 when it would now)."""
        cb = self._breakers.get(instance_id)
        opened_at = cb._state_storage.opened_at if cb is not None else None
        if cb is None or opened_at is None or cb.current_state == pybreaker.STATE_CLOSED:
            return 0.0
        elapsed = (datetime.datetime.now(datetime.UTC) - opened_at).total_seconds()
        return max(0.0, cb.reset_timeout - elapsed)

    def allows(self, instance_id: str) -> bool:
        """Whether a call to this instance would be let through now."""
        state = self.state(instance_id)
        if state == pybreaker.STATE_CLOSED:
            return True
        if instance_id in self._trials:
            return False
        return state == pybreaker.STATE_HALF_OPEN or self.retry_in_s(instance_id) <= 0.0

    def record(self, instance_id: str, *, failed: bool) -> None:
        """Counts one finished call to a closed breaker's instance in its failure window, and
        opens the breaker when the window's failure rate reaches the threshold."""
        window = self._windows.get(instance_id)
        if window is None:
            window = self._windows[instance_id] = FailureWindow(self.window_s)
        now = self._now()
        window.record(now, failed)
        if not failed:
            return
        counts = window.counts(now)
        if counts.calls < self.min_calls or counts.rate < self.failure_rate:
            return
        cb = self._breakers.get(instance_id)
        if cb is not None and cb.current_state == pybreaker.STATE_CLOSED:
            self._rate_trips[instance_id] = (
                f"{counts.rate:.0%} failures over {self.window_s:g} s ({counts.failures} of {counts.calls} calls)"
            )
            cb.open()

    def window(self, instance_id: str) -> WindowCounts:
        window = self._windows.get(instance_id)
        return window.counts(self._now()) if window is not None else WindowCounts(0, 0)

    def reason(self, instance_id: str) -> str:
        """Why the instance's breaker is open or half-open ("" while closed)."""
        state = self.state(instance_id)
        if state == pybreaker.STATE_CLOSED:
            return ""
        why = self._reasons.get(instance_id, "repeated failures")
        return why if state == pybreaker.STATE_OPEN else f"half-open after {why}: one trial call goes through"

    def snapshot(self) -> list[BreakerView]:
        views = []
        for instance_id, cb in self._breakers.items():
            counts = self.window(instance_id)
            views.append(
                BreakerView(
                    instance_id,
                    cb.current_state,
                    self.reason(instance_id),
                    cb.fail_counter,
                    counts.failures,
                    counts.calls,
                )
            )
        return views

    def forget(self, instance_id: str) -> None:
        self._breakers.pop(instance_id, None)
        self._windows.pop(instance_id, None)
        self._reasons.pop(instance_id, None)
        self._trials.discard(instance_id)


class Breaker:
    def __init__(self, next: Handler, board: BreakerBoard) -> None:
        self._next, self._board = next, board

    def key(self, call: Call) -> str:
        """What the breaker guards for this call ("" for nothing): the routed instance."""
        return call.target.instance_id if call.target is not None else ""

    def open_error(self, call: Call, key: str, retry_in_s: float, reason: str) -> MeshError:
        target = call.target
        return CircuitOpen(
            key, target.agent if target else "", str(target.version) if target else "", retry_in_s, reason
        )

    async def __call__(self, call: Call) -> Reply:
        instance_id = self.key(call)
        if not instance_id:  # routing always sets a target; nothing to guard otherwise
            return await self._next(call)
        cb = self._board.breaker(instance_id)
        state = cb.current_state
        call.record.breaker_state = state
        trial = state != pybreaker.STATE_CLOSED
        try:
            if trial and instance_id in self._board._trials:
                raise pybreaker.CircuitBreakerError("a trial call is already in flight")
            if trial:
                self._board._trials.add(instance_id)
            try:
                with cb.calling():  # pybreaker's call_async needs Tornado; this does not
                    reply = await self._next(call)
            except MeshError as err:
                if not trial:
                    self._board.record(instance_id, failed=is_outage(err))
                raise
            finally:
                if trial:
                    self._board._trials.discard(instance_id)
            if not trial:
                self._board.record(instance_id, failed=False)
            return reply
        except pybreaker.CircuitBreakerError as exc:
            raise self.open_error(
                call, instance_id, self._board.retry_in_s(instance_id), self._transitions_reason(instance_id)
            ) from exc

    def _transitions_reason(self, instance_id: str) -> str:
        why = self._board._reasons.get(instance_id, "")
        last = self._board._transitions.last_failure.get(instance_id, "")
        return "; ".join(part for part in (why, f"last failure: {last}" if last else "") if part)


def layer(board: BreakerBoard) -> Layer:
    return lambda next: Breaker(next, board)
