"""Fencing tokens a sidecar can check without asking the registry: what they say, how they are
signed and verified.

The registry signs (Ed25519, a key of its own in its data dir) a FencingClaim: task id, token
number, holder instance and agent, lease expiry. A holder gets a fresh claim at every lease and
heartbeat. A verifier accepts a claim only when the signature is the registry's, the lease has
not lapsed, and no newer token for that task was seen (`FenceMemory`).

A holder's claim keeps its token for the whole lease, while each heartbeat moves the expiry:
a verifier that saw a renewed claim for the same token (the holder's own sidecar relays every
heartbeat, `FenceMemory.admit`) accepts the first claim until the renewed expiry, so a client
built with the first claim (an HTTP client's fixed headers) works for the whole lease.

The worst case, stated plainly: a claim stays acceptable until its lease expiry to a verifier
that has not yet seen the newer token. A frozen holder that wakes before its lease lapses is
still the holder (the registry agrees); after the lapse, every verifier refuses it, and any
verifier that saw the successor's token refuses it at once. So two holders act at the same time
only while the registry itself still counts the first as holder: never after its lease expiry.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import DecodeError

from meshwarden.v1 import tasks_pb2


class StaleFence(Exception):
    """A call's task token is not current; the message says which task, holder and token are."""

    def __init__(self, task_id: str, message: str) -> None:
        super().__init__(message)
        self.task_id = task_id


@dataclass(frozen=True, kw_only=True, slots=True)
class Fence:
    task_id: str
    token: int
    holder_instance_id: str
    holder_agent: str
    lease_expires_at: float


def sign(key: Ed25519PrivateKey, fence: Fence) -> bytes:
    claim = tasks_pb2.FencingClaim(
        task_id=fence.task_id,
        fencing_token=fence.token,
        holder_instance_id=fence.holder_instance_id,
        holder_agent=fence.holder_agent,
    )
    claim.lease_expires_at.FromNanoseconds(int(fence.lease_expires_at * 1e9))
    body = claim.SerializeToString()
    return tasks_pb2.SignedFencingClaim(claim=body, signature=key.sign(body)).SerializeToString()


def claimed_task(signed: bytes) -> tuple[str, int]:
    """The task id and token a claim names, unverified ("" and 0 for none or garbage): for
    records of a call (receipts) and for a claim a stage has verified already."""
    if not signed:
        return "", 0
    try:
        claim = tasks_pb2.FencingClaim.FromString(tasks_pb2.SignedFencingClaim.FromString(signed).claim)
    except DecodeError:
        return "", 0
    return claim.task_id[:128], claim.fencing_token


def verify(public_key: Ed25519PublicKey, signed: bytes, now: float) -> Fence:
    """The fence in `signed` when the registry signed it and its lease has not lapsed."""
    return unexpired(signed_fence(public_key, signed), now)


def signed_fence(public_key: Ed25519PublicKey, signed: bytes) -> Fence:
    """The fence in `signed` when the registry signed it, lapsed or not."""
    try:
        envelope = tasks_pb2.SignedFencingClaim.FromString(signed)
        public_key.verify(envelope.signature, envelope.claim)
        claim = tasks_pb2.FencingClaim.FromString(envelope.claim)
    except (DecodeError, InvalidSignature):
        raise StaleFence("", "task token refused: not signed by this mesh's registry") from None
    fence = Fence(
        task_id=claim.task_id,
        token=claim.fencing_token,
        holder_instance_id=claim.holder_instance_id,
        holder_agent=claim.holder_agent,
        lease_expires_at=claim.lease_expires_at.ToNanoseconds() / 1e9,
    )
    return fence


def unexpired(fence: Fence, now: float) -> Fence:
    """`fence` while its lease runs; StaleFence once it lapsed."""
    if fence.lease_expires_at <= now:
        raise StaleFence(
            fence.task_id,
            f"lease lost: task {fence.task_id} token {fence.token} held by {fence.holder_instance_id} "
            "lapsed (its lease expired)",
        )
    return fence


class FenceMemory:
    """The newest token this verifier saw per task: an older one is refused even before expiry."""

    def __init__(self, max_tasks: int = 100_000) -> None:
        self._newest: dict[str, Fence] = {}
        self._max = max_tasks

    def renewed(self, fence: Fence) -> Fence:
        """`fence`, or the same token's latest renewal this verifier saw (a later lease expiry)."""
        newest = self._newest.get(fence.task_id)
        if newest is not None and newest.token == fence.token and newest.lease_expires_at > fence.lease_expires_at:
            return newest
        return fence

    def admit(self, fence: Fence) -> None:
        newest = self._newest.get(fence.task_id)
        if newest is not None and newest.token > fence.token:
            raise StaleFence(
                fence.task_id,
                f"lease lost: task {fence.task_id} is held by {newest.holder_instance_id} since token "
                f"{newest.token}; token {fence.token} is no longer current",
            )
        if newest is not None and newest.token == fence.token and newest.lease_expires_at >= fence.lease_expires_at:
            return  # the same lease, renewed later than this claim says: keep the renewal
        if newest is None and len(self._newest) >= self._max:
            self._newest.pop(next(iter(self._newest)))  # forget the oldest entry; expiry still bounds it
        self._newest[fence.task_id] = fence
