"""Refuse a call made under a task's fencing token that is no longer current, before it leaves.

The claim is the registry's signed one (meshwarden.task_fence): checked here without a round
trip. It is refused when it is not the registry's, when its lease expired (a holder frozen
past its TTL wakes with an expired claim), or when this sidecar has seen a newer token for the
task. A call with no claim works on no task and passes. Until this sidecar has the registry's
key, a call with a claim is refused as RegistryUnavailable (it cannot be checked).
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from meshwarden import task_fence
from meshwarden.errors import LeaseLost, RegistryUnavailable
from meshwarden.sidecar.call import Call, Handler, Layer, Reply


class Fences:
    """The registry's fencing key (set once the sidecar fetched it) and the newest tokens seen."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.key: Ed25519PublicKey | None = None
        self.memory = task_fence.FenceMemory()
        self._now = now

    def check(self, signed: bytes) -> None:
        """Refuses (LeaseLost) a claim not signed by the registry, lapsed (counting renewals of
        its lease seen here), or older than a token seen here for the task."""
        if self.key is None:
            raise RegistryUnavailable("this sidecar has not fetched the registry's fencing key yet; retry shortly")
        try:
            fence = self.memory.renewed(task_fence.signed_fence(self.key, signed))
            self.memory.admit(fence)  # an older token than one seen here: refused, naming the holder now
            task_fence.unexpired(fence, self._now())
        except task_fence.StaleFence as stale:
            raise LeaseLost(str(stale)) from None

    def learn(self, signed: bytes) -> None:
        """Remembers a claim the registry just issued to this sidecar's agent (a lease or a
        heartbeat it relayed), so calls under the same token count on the renewed expiry."""
        if self.key is None or not signed:
            return
        try:
            self.memory.admit(task_fence.signed_fence(self.key, signed))
        except task_fence.StaleFence:
            return  # a newer token for the task is known here: nothing to learn


class TaskFence:
    def __init__(self, next: Handler, fences: Fences) -> None:
        self._next, self._fences = next, fences

    async def __call__(self, call: Call) -> Reply:
        if call.task_token:
            self._fences.check(call.task_token)
        return await self._next(call)


def layer(fences: Fences) -> Layer:
    return lambda next: TaskFence(next, fences)
