"""Policy bundles, OPA's way: verify, activate atomically, keep the last good one, report.

For each revision offered (from the watch stream, or from disk at start-up):
1. refuse it unless it is newer than the active one;
2. verify it against the trusted Ed25519 keys (policy_bundle.verify);
3. build an immutable ActivePolicy for this agent (Cedar parsed once, only its slice; policy
   files whose text the active revision has too are taken parsed from it);
4. swap it in with one reference assignment (calls in flight keep the one they started with);
5. persist the raw bundle as last good (temp file, fsync, rename);
6. report what is active, or why a revision was refused, to the registry.
A refused revision changes nothing: the last good policy stays active. Until some revision is
active, every call is denied (or, with --allow-without-policy, loudly allowed).

Steps 2, 3 and 5 run in a worker thread (a 1,000-policy bundle takes hundreds of ms to build,
on every sidecar at once), one activation at a time: the swap happens back on the event loop,
so calls see the old policy or the new one, never a part of either. The replaced policy is
freed in a worker too, piece by piece, once no call in flight holds it (freeing it whole took
6-10 ms of the GIL: sidecar.policy.retirement). While a worker builds or frees, the
interpreter switches threads every 0.5 ms instead of 5 ms, so the loop's thread, which needs
the GIL each time it wakes, waits for the worker at most that long
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

from meshwarden import tasks
from meshwarden.policy_bundle.errors import BundleError
from meshwarden.policy_bundle.keys import load_public_key
from meshwarden.policy_bundle.verify import VerifiedBundle, verify
from meshwarden.secure_files import ensure_private_dir, write_atomically
from meshwarden.sidecar.policy import ActivePolicy
from meshwarden.sidecar.policy.active_policy import ParsedFiles
from meshwarden.sidecar.policy.retirement import sole_reference, take_apart

log = logging.getLogger(__name__)

LAST_GOOD = "last-good.bundle.json"
BUILD_SWITCH_INTERVAL_S = 0.0005
# A replaced policy is freed once no call holds it; looked at this often, for at most this long
# (then the last call to let go of it frees it, on the loop).
RETIRE_POLL_S = 0.05
RETIRE_WAIT_S = 120.0
# The cyclic GC's third threshold while a worker builds: no full collection starts (see build_window).
_NO_FULL_COLLECTION = 1 << 30


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
        self._retiring: set[asyncio.Task[None]] = set()

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
            with build_window():
                active = await asyncio.to_thread(self._build, verified, capabilities, self._parsed())
            self._swap(active, verified)

    async def _activate(self, raw: bytes, *, persist: bool) -> None:
        if not self._keys:
            raise BundleError("no trusted bundle keys are configured on this sidecar (--bundle-keys DIR)")
        async with self._one_at_a_time:
            current = self._holder.verified
            newer_than = current.manifest.revision if current else None
            capabilities = self._capabilities()
            with build_window():
                verified, active = await asyncio.to_thread(self._prepare, raw, newer_than, capabilities, self._parsed())
            self._swap(active, verified)
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

    def _swap(self, active: ActivePolicy, verified: VerifiedBundle) -> None:
        """One reference assignment; the replaced policy goes to `_retire`."""
        replaced = [self._holder.active] if self._holder.active is not None else None
        self._holder.active, self._holder.verified = active, verified  # the swap
        if replaced is not None:
            task = tasks.spawn(self._retire(replaced), "policy-retirement")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _retire(self, replaced: list[ActivePolicy]) -> None:
        """Frees the replaced policy in a worker once `replaced` holds its only reference."""
        waited = 0.0
        while not sole_reference(replaced):
            if waited >= RETIRE_WAIT_S:
                log.info("a replaced policy is still in use after %.0f s; the call that ends last frees it", waited)
                return
            await asyncio.sleep(RETIRE_POLL_S)
            waited += RETIRE_POLL_S
        async with self._one_at_a_time:  # a build's switch interval and collector settings are not undone
            with _loop_first():
                await asyncio.to_thread(take_apart, replaced)

    def _parsed(self) -> ParsedFiles:
        """The active policy's parsed files, which a build reuses where a file is unchanged."""
        return self._holder.active.parsed_files if self._holder.active is not None else {}

    def _prepare(
        self,
        raw: bytes,
        newer_than: int | None,
        capabilities: list[str],
        parsed: ParsedFiles,
    ) -> tuple[VerifiedBundle, ActivePolicy]:
        """In a worker thread: verify, then build (touches nothing the loop reads)."""
        verified = verify(raw, self._keys, newer_than=newer_than)
        return verified, self._build(verified, capabilities, parsed)

    def _build(self, verified: VerifiedBundle, capabilities: list[str], parsed: ParsedFiles) -> ActivePolicy:
        return ActivePolicy(verified, local_agent=self._agent, local_capabilities=capabilities, parsed=parsed)


@contextlib.contextmanager
def _loop_first() -> Iterator[None]:
    """Shorter GIL turns while a worker builds or frees a policy (one at a time: the loader's
    lock), so that the loop's thread gets the GIL back within 0.5 ms instead of 5 ms."""
    default = sys.getswitchinterval()
    sys.setswitchinterval(BUILD_SWITCH_INTERVAL_S)
    try:
        yield
    finally:
        sys.setswitchinterval(default)


@contextlib.contextmanager
def build_window() -> Iterator[None]:
    """What a build runs in: `_loop_first`, and no full collection of the cyclic GC. A build
    allocates some 160,000 objects for a 1,000-policy bundle, enough to set off a full
    collection midway, which holds the GIL (and so the loop) for tens of ms
    (benchmarks/bundle_build_gil.py). Young collections go on, each short, so the cyclic garbage
    calls make meanwhile is collected as usual. Afterwards the young generations are collected
    (about 1 ms: they hold at most a few thousand objects) and what is alive is frozen, as
    start-up's heap is (sidecar.app), so that no later full collection scans the new policy.
    A replaced policy is still freed by reference counting (sidecar.policy.retirement). What
    escapes the collector: objects of calls in flight at that moment that later die in a cycle,
    and cyclic garbage that reached the oldest generation during the build (both rare; a
    policy itself makes none: test_a_policy_leaves_no_cyclic_garbage)."""
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], _NO_FULL_COLLECTION)
    try:
        with _loop_first():
            yield
    finally:
        gc.collect(1)
        gc.freeze()
        gc.set_threshold(*thresholds)
