"""sidecar.bundle_loader: revisions verify and build in a worker thread, one at a time, and
swap in whole; a rebuild for new capabilities never undoes a newer revision; a replaced policy
is freed in a worker once no call holds it; a build freezes no garbage."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshwarden.policy_bundle.verify import VerifiedBundle
from meshwarden.sidecar import bundle_loader
from meshwarden.sidecar.bundle_loader import BundleLoader, BundleStatus, PolicyHolder
from meshwarden.sidecar.policy import ActivePolicy, retirement
from meshwarden.sidecar.policy.active_policy import ParsedFiles
from tests.policy_helpers import KEY_ID, signed_bytes, write_bundle


def _revision(directory: Path, key: Ed25519PrivateKey, revision: int) -> bytes:
    write_bundle(directory)
    manifest = directory / "manifest.toml"
    manifest.write_text(manifest.read_text().replace("revision = 1", f"revision = {revision}"))
    return signed_bytes(directory, key)


def _loader(tmp_path: Path, key: Ed25519PrivateKey, holder: PolicyHolder, reports: list[int]) -> BundleLoader:
    async def report(status: BundleStatus) -> None:
        reports.append(status.active_revision)

    return BundleLoader(
        holder,
        agent="support",
        capabilities=lambda: ["support.resolve_ticket"],
        trusted_keys={KEY_ID: key.public_key()},
        data_dir=tmp_path / "sidecar",
        report=report,
    )


async def test_a_revision_is_built_off_the_event_loop_and_swapped_in_whole(tmp_path: Path, monkeypatch: object) -> None:
    key = Ed25519PrivateKey.generate()
    holder, reports = PolicyHolder(), []
    loader = _loader(tmp_path, key, holder, reports)
    built_on: list[threading.Thread] = []
    real_build = loader._build

    def spy(*args: object) -> ActivePolicy:
        built_on.append(threading.current_thread())
        return real_build(*args)  # type: ignore[arg-type]

    loader._build = spy  # type: ignore[method-assign]
    await loader.offer(_revision(tmp_path / "b", key, 2), 2)
    assert built_on and built_on[0] is not threading.main_thread()
    assert holder.active is not None and holder.active.revision == 2 and reports == [2]
    assert (tmp_path / "sidecar" / "policy" / bundle_loader.LAST_GOOD).exists()


async def test_a_rebuild_never_undoes_a_newer_revision(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    holder, reports = PolicyHolder(), []
    loader = _loader(tmp_path, key, holder, reports)
    await loader.offer(_revision(tmp_path / "b", key, 2), 2)
    newer = _revision(tmp_path / "c", key, 3)
    # The agent re-registers (a rebuild of revision 2, held in its worker until released)
    # while revision 3 arrives: revision 3 must be what stays active.
    release = threading.Event()
    real_build = loader._build

    def slow_for_revision_2(verified: VerifiedBundle, capabilities: list[str], parsed: ParsedFiles) -> ActivePolicy:
        if verified.manifest.revision == 2:
            release.wait(10)
        return real_build(verified, capabilities, parsed)

    loader._build = slow_for_revision_2  # type: ignore[method-assign]
    rebuild = asyncio.create_task(loader.rebuild_for_capabilities())
    offer = asyncio.create_task(loader.offer(newer, 3))
    await asyncio.sleep(0.2)  # revision 3 may now be verified and built, if nothing holds it back
    release.set()
    await asyncio.gather(rebuild, offer)
    assert holder.active is not None and holder.active.revision == 3
    assert holder.verified is not None and holder.verified.manifest.revision == 3
    await loader.rebuild_for_capabilities()
    assert holder.active.revision == 3


async def test_a_refused_revision_keeps_the_last_good_one(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    holder, reports = PolicyHolder(), []
    loader = _loader(tmp_path, key, holder, reports)
    await loader.offer(_revision(tmp_path / "b", key, 2), 2)
    tampered = bytearray(_revision(tmp_path / "c", key, 3))
    tampered[len(tampered) // 2] ^= 1
    await loader.offer(bytes(tampered), 3)
    assert holder.active is not None and holder.active.revision == 2
    assert holder.status.refused_revision == 3 and holder.status.refusal


async def test_a_replaced_policy_is_freed_in_a_worker_once_no_call_holds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = Ed25519PrivateKey.generate()
    holder, reports = PolicyHolder(), []
    loader = _loader(tmp_path, key, holder, reports)
    await loader.offer(_revision(tmp_path / "b", key, 2), 2)
    in_flight = holder.active  # what a call still deciding holds
    assert in_flight is not None
    replaced = weakref.ref(in_flight)
    loop = asyncio.get_running_loop()
    freed = asyncio.Event()
    freed_on: list[threading.Thread] = []

    def spy(box: list[ActivePolicy]) -> None:
        freed_on.append(threading.current_thread())
        retirement.take_apart(box)
        loop.call_soon_threadsafe(freed.set)

    monkeypatch.setattr(bundle_loader, "take_apart", spy)
    monkeypatch.setattr(bundle_loader, "RETIRE_POLL_S", 0.01)
    await loader.offer(_revision(tmp_path / "c", key, 3), 3)
    for _ in range(5):  # several looks at it while the call holds it
        await asyncio.sleep(0.01)
    assert not freed_on and in_flight.revision == 2 and in_flight.policy_count > 0
    del in_flight  # the call ends
    await asyncio.wait_for(freed.wait(), 10)
    assert freed_on[0] is not threading.main_thread()
    assert replaced() is None
    assert holder.active is not None and holder.active.revision == 3


def test_cyclic_garbage_made_while_a_build_runs_is_collected_not_frozen() -> None:
    """Calls go on while a worker builds; their cyclic garbage must not be frozen with the
    new policy when the build ends."""

    class Cycle:
        itself: object

    gc.collect()
    try:
        with bundle_loader.build_window():
            garbage = Cycle()
            garbage.itself = garbage
            gone = weakref.ref(garbage)
            del garbage
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
