"""Policy bundles, OPA's way: verify, activate atomically, keep the last good one, report.

For each revision offered (from the watch stream, or from disk at start-up):
1. refuse it unless it is newer than the active one;
2. verify it against the trusted Ed25519 keys (policy_bundle.verify);
3. build an immutable ActivePolicy for this agent (Cedar parsed once, only its slice);
4. swap it in with one reference assignment (calls in flight keep the one they started with);
5. persist the raw bundle as last good (temp file, fsync, rename);
6. report what is active, or why a revision was refused, to the registry.
A refused revision changes nothing: the last good policy stays active. Until some revision is
active, every call is denied (or, with --allow-without-policy, loudly allowed).

Steps 2, 3 and 5 run in a worker thread (a 1,000-policy bundle takes hundreds of ms to build,
on every sidecar at once), one activation at a time: the swap happens back on the event loop,
so calls see the old policy or the new one, never a part of either. While a build runs, the
interpreter switches threads every 0.5 ms instead of 5 ms, so the loop's thread, which needs
the GIL each time it wakes, waits for the builder at most that long
(benchmarks/bundle_push_p99.py); outside builds the default stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from meshwarden.policy_bundle.errors import BundleError
from meshwarden.policy_bundle.keys import load_public_key
from meshwarden.policy_bundle.verify import VerifiedBundle, verify
from meshwarden.secure_files import ensure_private_dir, write_atomically
from meshwarden.sidecar.policy import ActivePolicy

log = logging.getLogger(__name__)

LAST_GOOD = "last-good.bundle.json"
BUILD_SWITCH_INTERVAL_S = 0.0005


class KeysError(Exception):
    pass


@dataclass
class BundleStatus:
    """What the admin port, the registry and `meshwarden bundle status` are told."""

    active_revision: int = 0
    active_digest: str = ""
    refused_revision: int = 0
    refusal: str = ""


@dataclass
class PolicyHolder:
    """The active policy: one reference, swapped whole. Stages read `active` once per call."""

    active: ActivePolicy | None = None
    verified: VerifiedBundle | None = None
    status: BundleStatus = field(default_factory=BundleStatus)


Report = Callable[[BundleStatus], Awaitable[None]]


def load_trusted_keys(directory: Path | None) -> dict[str, Ed25519PublicKey]:
    """`<key-id>.pub` files in `directory`; none configured means every bundle is refused."""
    if directory is None:
        return {}
    try:
        files = sorted(directory.glob("*.pub"))
    except OSError as exc:
        raise KeysError(f"cannot read --bundle-keys {directory}: {exc.strerror}") from exc
    try:
        return {f.stem: load_public_key(f) for f in files}
    except BundleError as exc:
        raise KeysError(str(exc)) from exc


class BundleLoader:
    def __init__(
        self,
        holder: PolicyHolder,
        *,
        agent: str,
        capabilities: Callable[[], list[str]],
        trusted_keys: dict[str, Ed25519PublicKey],
        data_dir: Path,
        report: Report,
    ) -> None:
        self._holder, self._agent, self._capabilities = holder, agent, capabilities
        self._keys, self._report = trusted_keys, report
        self._last_good = ensure_private_dir(data_dir / "policy") / LAST_GOOD
        self._one_at_a_time = asyncio.Lock()  # a rebuild never undoes a newer revision

    async def load_last_good(self) -> None:
        """At start-up, before the registry is reachable: re-verify and activate what was
        persisted. A file that no longer verifies (keys rotated, disk tampered) is ignored."""
        path = self._last_good
        raw = await asyncio.to_thread(lambda: path.read_bytes() if path.exists() else None)
        if raw is None:
            return
        try:
            await self._activate(raw, persist=False)
        except BundleError as exc:
            log.error("ignoring the persisted policy bundle %s: %s", self._last_good, exc)

    async def offer(self, raw: bytes, revision: int) -> None:
        try:
            await self._activate(raw, persist=True)
        except BundleError as exc:
            self._holder.status.refused_revision, self._holder.status.refusal = revision, str(exc)
            log.error(
                "refused policy bundle revision %d: %s; keeping revision %d",
                revision,
                exc,
                self._holder.status.active_revision,
            )
        await self._report(self._holder.status)

    async def rebuild_for_capabilities(self) -> None:
        """The agent (re)registered: the inbound slice depends on what it serves."""
        async with self._one_at_a_time:
            verified = self._holder.verified
            if verified is None:
                return
            capabilities = self._capabilities()  # read on the loop, where the agent registers
            with _loop_first():
                active = await asyncio.to_thread(self._build, verified, capabilities)
            self._holder.active = active  # the swap

    async def _activate(self, raw: bytes, *, persist: bool) -> None:
        if not self._keys:
            raise BundleError("no trusted bundle keys are configured on this sidecar (--bundle-keys DIR)")
        async with self._one_at_a_time:
            current = self._holder.verified
            newer_than = current.manifest.revision if current else None
            capabilities = self._capabilities()
            with _loop_first():
                verified, active = await asyncio.to_thread(self._prepare, raw, newer_than, capabilities)
            self._holder.active, self._holder.verified = active, verified  # the swap
            self._holder.status.active_revision = verified.manifest.revision
            self._holder.status.active_digest = verified.digest
            if persist:
                await asyncio.to_thread(write_atomically, self._last_good, raw)
        log.info(
            "policy %s active (%s, signed by %s; %d policies)",
            verified.manifest.label,
            verified.digest,
            verified.key_id,
            active.policy_count,
        )

    def _prepare(
        self, raw: bytes, newer_than: int | None, capabilities: list[str]
    ) -> tuple[VerifiedBundle, ActivePolicy]:
        """In a worker thread: verify, then build (touches nothing the loop reads)."""
        verified = verify(raw, self._keys, newer_than=newer_than)
        return verified, self._build(verified, capabilities)

    def _build(self, verified: VerifiedBundle, capabilities: list[str]) -> ActivePolicy:
        return ActivePolicy(verified, local_agent=self._agent, local_capabilities=capabilities)


@contextlib.contextmanager
def _loop_first() -> Iterator[None]:
    """Shorter GIL turns while a worker builds (builds are one at a time: the loader's lock),
    and no cyclic garbage collection: a build allocates some 160,000 objects for a 1,000-policy
    bundle, enough to set off a full collection midway, which holds the GIL (and so the loop)
    for tens of ms (benchmarks/bundle_build_gil.py). A build makes no cyclic garbage
    (tests/unit/sidecar/policy: test_a_policy_leaves_no_cyclic_garbage), so nothing is owed to
    the collector; afterwards what is alive is frozen, as start-up's heap is (sidecar.app), so
    that no later full collection scans the new policy either. A replaced policy is still freed
    by reference counting. The cost: cyclic garbage of calls in flight at that moment is
    never collected (a few objects per activation)."""
    default = sys.getswitchinterval()
    sys.setswitchinterval(BUILD_SWITCH_INTERVAL_S)
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        sys.setswitchinterval(default)
        gc.freeze()
        if collecting:
            gc.enable()
