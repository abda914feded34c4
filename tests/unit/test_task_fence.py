"""Signed fencing claims: the registry's signature, the lease expiry, and a newer token seen
before all decide whether a call's token is current."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshwarden import task_fence
from meshwarden.task_fence import Fence, FenceMemory, StaleFence

KEY = Ed25519PrivateKey.generate()


def _fence(token: int, holder: str = "worker-a", expires: float = 100.0) -> Fence:
    return Fence(
        task_id="task-1", token=token, holder_instance_id=holder, holder_agent="worker", lease_expires_at=expires
    )


def test_a_claim_signed_by_the_registry_verifies_until_its_lease_expires() -> None:
    signed = task_fence.sign(KEY, _fence(3))
    assert task_fence.verify(KEY.public_key(), signed, now=99.0) == _fence(3)
    with pytest.raises(StaleFence, match="lease lost: task task-1 token 3 held by worker-a lapsed"):
        task_fence.verify(KEY.public_key(), signed, now=100.0)


def test_a_claim_signed_by_another_key_or_altered_is_refused() -> None:
    forged = task_fence.sign(Ed25519PrivateKey.generate(), _fence(9))
    with pytest.raises(StaleFence, match="not signed by this mesh's registry"):
        task_fence.verify(KEY.public_key(), forged, now=0.0)
    signed = bytearray(task_fence.sign(KEY, _fence(1)))
    signed[-1] ^= 1
    with pytest.raises(StaleFence):
        task_fence.verify(KEY.public_key(), bytes(signed), now=0.0)
    with pytest.raises(StaleFence):
        task_fence.verify(KEY.public_key(), b"\xff not a claim", now=0.0)


def test_a_newer_token_seen_supersedes_older_ones_before_they_expire() -> None:
    memory = FenceMemory()
    memory.admit(_fence(1))
    memory.admit(_fence(2, holder="worker-b"))
    with pytest.raises(StaleFence, match="task task-1 is held by worker-b since token 2; token 1 is no longer"):
        memory.admit(_fence(1))
    memory.admit(_fence(2, holder="worker-b"))  # the current holder keeps working


def test_the_claimed_task_is_read_for_records_and_garbage_names_none() -> None:
    assert task_fence.claimed_task(task_fence.sign(KEY, _fence(4))) == ("task-1", 4)
    assert task_fence.claimed_task(b"") == ("", 0)
    assert task_fence.claimed_task(b"\xff garbage") == ("", 0)
