"""Fail fast on an instance whose recent calls keep failing: one pybreaker breaker per instance.

pybreaker's `call_async` needs Tornado; `with cb.calling(): await ...` does not, and its
generator-based context manager records the outcome when the `await` finishes. pybreaker
lets every call through while half-open, so the board admits one trial call at a time itself.

Only outages count: Unreachable errors and AgentFailed with INTERNAL or UNAVAILABLE. A refusal
(policy, bad payload) or an agent's own business error is no outage (`exclude=`).

Consecutive failures only: pybreaker 1.4 has no failure-rate window.
"""

from __future__ import annotations

import datetime
import logging

import grpc
import pybreaker

from meshwarden.errors import AgentFailed, CircuitOpen, Unreachable
from sidecar.call import Call, Handler, Layer, Reply

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
    """Logs every change of state with its reason (the failure that tripped it)."""

    def __init__(self) -> None:
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
        if new_state.name == pybreaker.STATE_OPEN:
            log.warning(
                "circuit opened for instance %s (was %s) after %d failure(s); last: %s; trial call in %.1f s",
                name,
                old,
                cb.fail_counter,
                self.last_failure.get(name, "?"),
                cb.reset_timeout,
            )
        elif new_state.name == pybreaker.STATE_HALF_OPEN:
            log.info(
                "circuit half-open for instance %s: %.1f s passed, one trial call goes through", name, cb.reset_timeout
            )
        else:
            log.info("circuit closed for instance %s: the trial call succeeded", name)


class BreakerBoard:
    """The breakers of this sidecar, by instance id; shared by routing (which avoids open
    instances while others are live) and the breaker stage (which drives them)."""

    def __init__(self, failures: int = 5, reset_s: float = 5.0) -> None:
        self.failures, self.reset_s = failures, reset_s
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}
        self._trials: set[str] = set()  # instances with a half-open trial call in flight
        self._transitions = _Transitions()

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

    def forget(self, instance_id: str) -> None:
        self._breakers.pop(instance_id, None)
        self._trials.discard(instance_id)


class Breaker:
    def __init__(self, next: Handler, board: BreakerBoard) -> None:
        self._next, self._board = next, board

    async def __call__(self, call: Call) -> Reply:
        target = call.target
        if target is None:  # routing always sets it; nothing to guard otherwise
            return await self._next(call)
        instance_id = target.instance_id
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
                    return await self._next(call)
            finally:
                if trial:
                    self._board._trials.discard(instance_id)
        except pybreaker.CircuitBreakerError as exc:
            raise CircuitOpen(
                instance_id,
                target.agent,
                str(target.version),
                self._board.retry_in_s(instance_id),
                self._transitions_reason(instance_id),
            ) from exc

    def _transitions_reason(self, instance_id: str) -> str:
        last = self._board._transitions.last_failure.get(instance_id, "")
        return f"last failure: {last}" if last else ""


def layer(board: BreakerBoard) -> Layer:
    return lambda next: Breaker(next, board)
