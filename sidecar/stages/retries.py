"""Resend a call that failed in transit, only when that is safe, within a budget.

Safe means: the attempt certainly never started at the callee (NotSent, NotRegistered,
PeerIdentityMismatch), or the call carries an idempotency key (the callee's sidecar runs a
key once) and failed with an Unreachable error or with the agent itself answering UNAVAILABLE
(gRPC's "try again": its model provider is down, say; another instance may serve). Refusals
and the agent's other failures are never retried: the same call would fail the same way.

Each attempt goes back through routing, which avoids the instances that already failed
while another qualifies. Backoff is exponential with full jitter (AWS's "full jitter"),
and no retry starts if its backoff would end past the call's deadline. As in Linkerd, a
budget bounds retries to a share of the recent call rate, so a sick mesh is not hit twice
as hard: each call deposits `ratio` tokens, each retry spends one, plus a floor of
`min_per_s` retries a second.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import grpc

from meshwarden.clock import Clock
from meshwarden.errors import AgentFailed, MeshError, NotRegistered, NotSent, PeerIdentityMismatch, Unreachable
from meshwarden.sidecar.call import Call, Handler, Layer, Reply

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class RetrySettings:
    max_attempts: int = 3
    base_backoff_s: float = 0.025
    max_backoff_s: float = 1.0
    budget_ratio: float = 0.2
    min_per_s: float = 10.0


class RetryBudget:
    """A token bucket: each original call adds `ratio`, each retry takes 1; a floor of
    `min_per_s` tokens a second refills it up to `min_per_s`. Deposits accrue up to ten
    seconds' worth of the floor, so a burst after a quiet spell cannot draw on old credit."""

    def __init__(self, ratio: float, min_per_s: float, clock: Clock) -> None:
        self._ratio, self._min_per_s, self._clock = ratio, min_per_s, clock
        self._tokens = min_per_s
        self._at = clock.monotonic()
        self._cap = max(min_per_s, 1.0) * 10

    def deposit(self) -> None:
        self._refill()
        self._tokens = min(self._tokens + self._ratio, self._cap)

    def withdraw(self) -> bool:
        self._refill()
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _refill(self) -> None:
        now = self._clock.monotonic()
        if now > self._at:
            floor = min(self._tokens + (now - self._at) * self._min_per_s, self._min_per_s)
            self._tokens = max(self._tokens, floor)
            self._at = now


def safe_to_retry(call: Call, err: MeshError) -> bool:
    if isinstance(err, (NotSent, NotRegistered, PeerIdentityMismatch)):
        return True  # the callee never began: resending cannot run anything twice
    if not call.idempotency_key:
        return False
    return isinstance(err, Unreachable) or (
        isinstance(err, AgentFailed) and err.agent_code == grpc.StatusCode.UNAVAILABLE
    )


class Retries:
    def __init__(
        self, next: Handler, settings: RetrySettings, clock: Clock, rng: random.Random, sleep: Sleep = asyncio.sleep
    ) -> None:
        self._next, self._settings, self._clock, self._rng, self._sleep = next, settings, clock, rng, sleep
        self.budget = RetryBudget(settings.budget_ratio, settings.min_per_s, clock)

    async def __call__(self, call: Call) -> Reply:
        self.budget.deposit()
        attempt = call
        while True:
            try:
                return await self._next(attempt)
            except MeshError as err:
                backoff = self._backoff(attempt, err)
                if backoff is None:
                    raise
                failed = err.instance_id  # the instance this attempt failed on, as the error says
                log.info(
                    "retrying %s (call %s, attempt %d failed: %s)", call.capability, call.call_id, attempt.attempt, err
                )
                attempt = replace(
                    attempt,
                    attempt=attempt.attempt + 1,
                    avoid_instances=attempt.avoid_instances | ({failed} if failed else set()),
                )
                await self._sleep(backoff)

    def _backoff(self, call: Call, err: MeshError) -> float | None:
        """Seconds to wait before the next attempt, or None when there must be none."""
        if call.attempt >= self._settings.max_attempts or not safe_to_retry(call, err):
            return None
        backoff = self._rng.uniform(
            0, min(self._settings.max_backoff_s, self._settings.base_backoff_s * 2 ** (call.attempt - 1))
        )
        if self._clock.monotonic() + backoff >= call.deadline:
            return None  # the retry could not finish in time anyway
        if not self.budget.withdraw():
            log.warning("retry budget exhausted; not retrying %s (call %s)", call.capability, call.call_id)
            return None
        return backoff


def layer(settings: RetrySettings, clock: Clock, rng: random.Random, sleep: Sleep = asyncio.sleep) -> Layer:
    return lambda next: Retries(next, settings, clock, rng, sleep)
