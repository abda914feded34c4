"""sidecar.bundle_loader: revisions verify and build in a worker thread, one at a time, and
swap in whole; a rebuild for new capabilities never undoes a newer revision."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshwarden.policy_bundle.verify import VerifiedBundle
from meshwarden.sidecar import bundle_loader
from meshwarden.sidecar.bundle_loader import BundleLoader, BundleStatus, PolicyHolder
from meshwarden.sidecar.policy import ActivePolicy
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

    def slow_for_revision_2(verified: VerifiedBundle, capabilities: list[str]) -> ActivePolicy:
        if verified.manifest.revision == 2:
            release.wait(10)
        return real_build(verified, capabilities)

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
