"""The task_fence stage: a call under a current signed claim passes, one under an expired or
superseded claim never reaches the next stage, and a call with no claim is not its business."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshwarden import task_fence
from meshwarden.errors import LeaseLost, RegistryUnavailable
from meshwarden.sidecar.stages.task_fence import Fences, TaskFence
from tests.unit.sidecar.fakes import Recorder, call

KEY = Ed25519PrivateKey.generate()


def _claim(token: int, expires: float = 100.0) -> bytes:
    fence = task_fence.Fence(
        task_id="task-1", token=token, holder_instance_id=f"w-{token}", holder_agent="w", lease_expires_at=expires
    )
    return task_fence.sign(KEY, fence)


def _stage(now: float = 50.0, *, with_key: bool = True) -> tuple[TaskFence, Recorder]:
    fences = Fences(lambda: now)
    if with_key:
        fences.key = KEY.public_key()
    inner = Recorder()
    return TaskFence(inner, fences), inner


async def test_a_current_claim_passes_and_an_older_one_is_refused_after_a_newer_was_seen() -> None:
    stage, inner = _stage()
    await stage(call(task_token=_claim(1)))
    await stage(call(task_token=_claim(2)))
    with pytest.raises(LeaseLost, match="task task-1 is held by w-2 since token 2; token 1 is no longer current"):
        await stage(call(task_token=_claim(1)))
    assert len(inner.calls) == 2


async def test_an_expired_claim_is_refused_and_no_claim_passes() -> None:
    stage, inner = _stage(now=100.0)
    with pytest.raises(LeaseLost, match="lapsed"):
        await stage(call(task_token=_claim(1, expires=100.0)))
    await stage(call())
    assert len(inner.calls) == 1


async def test_without_the_registrys_key_a_claim_cannot_be_checked_and_is_refused() -> None:
    stage, inner = _stage(with_key=False)
    with pytest.raises(RegistryUnavailable, match="fencing key"):
        await stage(call(task_token=_claim(1)))
    assert inner.calls == []


async def test_a_claim_counts_on_the_renewal_of_its_lease_seen_here_and_not_on_another_tokens() -> None:
    fences = Fences(lambda: 150.0)
    fences.key = KEY.public_key()
    inner = Recorder()
    stage = TaskFence(inner, fences)
    first = _claim(1, expires=100.0)  # what an HTTP client built at the lease keeps sending
    with pytest.raises(LeaseLost, match="lapsed"):
        await stage(call(task_token=first))
    fences.learn(_claim(1, expires=200.0))  # the holder's heartbeat, relayed by this sidecar
    await stage(call(task_token=first))
    fences.learn(_claim(2, expires=300.0))  # another holder's lease
    with pytest.raises(LeaseLost, match="held by w-2 since token 2"):
        await stage(call(task_token=first))
    assert len(inner.calls) == 1
