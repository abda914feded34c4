"""Policy bundle revisions: stored, distributed, and what each sidecar reports it enforces.

The registry checks that a pushed artifact is a well-formed bundle and that its revision is
newer than every revision pushed before. Given the trusted public keys (`--bundle-keys`, the
same the sidecars hold; never a signing key), it verifies the signature and every file first,
so a bundle no sidecar would accept (an edited manifest, a stranger's key) is refused at push
and never becomes the latest revision that later pushes must beat and new sidecars receive.
Without keys it cannot judge signatures and says so on every push; every sidecar verifies
anyway, and reports back what it enforces or why it refused. All revisions are kept (an audit
trail, and the material for a rollback by pushing an old bundle again under a new revision).
A push is published to every watcher once stored, with its audit entry in the same transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from meshwarden import tasks
from meshwarden.clock import Clock
from meshwarden.policy_bundle.artifact import Artifact, bundle_digest, contents_of, decode
from meshwarden.policy_bundle.errors import BundleError
from meshwarden.policy_bundle.manifest import Manifest
from meshwarden.policy_bundle.verify import verify
from meshwarden.registry.audit import Audit, logged
from meshwarden.registry.authz import Caller
from meshwarden.registry.errors import Conflict, InvalidInput
from meshwarden.registry.reporter_ownership import owned_reporter
from meshwarden.registry.store import BundleStore
from meshwarden.registry.store.records import SidecarBundleStatus, StoredBundle

log = logging.getLogger(__name__)

MAX_ARTIFACT_BYTES = 8 * 1024 * 1024
MAX_REFUSAL_CHARS = 2000

__all__ = ["MAX_ARTIFACT_BYTES", "BundlePublished", "Bundles", "SidecarBundleStatus", "StoredBundle"]


@dataclass(frozen=True, kw_only=True, slots=True)
class BundlePublished:
    """A hub event: a new revision for every watcher (catalog revisions are not affected)."""

    bundle: StoredBundle


@dataclass(frozen=True, kw_only=True, slots=True)
class _Checked:
    name: str
    revision: int
    digest: str


class Bundles:
    def __init__(
        self,
        store: BundleStore,
        clock: Clock,
        audit: Audit,
        publish: Callable[[BundlePublished], None] = lambda _: None,
        *,
        trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
    ) -> None:
        self._store, self._clock, self._audit, self._publish = store, clock, audit, publish
        self._keys = trusted_keys
        self._pushing = asyncio.Lock()
        self.latest_revision = 0  # for the metrics; set by `load` and each push

    async def load(self) -> None:
        latest = await self._store.latest()
        self.latest_revision = latest.revision if latest is not None else 0

    async def catch_up(self) -> None:
        """Publishes the latest bundle when another replica stored a newer one than this one knows."""
        async with self._pushing:
            latest = await self._store.latest()
            if latest is not None and latest.revision > self.latest_revision:
                self.latest_revision = latest.revision
                self._publish(BundlePublished(bundle=latest))

    async def push(self, raw: bytes, caller: Caller | None = None) -> StoredBundle:
        if len(raw) > MAX_ARTIFACT_BYTES:
            raise InvalidInput("artifact", f"is {len(raw)} bytes, over the limit of {MAX_ARTIFACT_BYTES}")
        checked = await asyncio.to_thread(_check, raw, self._keys)  # decoding and hashing 8 MiB takes a while
        stored = await tasks.to_completion(self._store_and_publish(checked, raw, caller))
        log.info("bundle %s revision %d pushed (%s)", stored.name, stored.revision, stored.digest)
        return stored

    async def _store_and_publish(self, checked: _Checked, raw: bytes, caller: Caller | None) -> StoredBundle:
        async with self._pushing:  # one push at a time: "newer than the latest" holds when stored
            latest = await self._store.latest()
            if latest is not None and checked.revision <= latest.revision:
                raise Conflict(
                    f"bundle {checked.name} revision {checked.revision} is not newer than revision "
                    f"{latest.revision} ({latest.name}) already pushed; raise `revision` in manifest.toml and build again"
                )
            if latest is not None and checked.name != latest.name:
                raise Conflict(
                    f"this mesh runs bundle {latest.name!r}; a bundle named {checked.name!r} would replace it. "
                    "Keep the name (one policy bundle per mesh)"
                )
            stored = StoredBundle(
                name=checked.name,
                revision=checked.revision,
                digest=checked.digest,
                artifact=raw,
                pushed_at=self._clock.wall(),
            )
            entry = self._audit.entry(
                caller, "bundle.push", f"bundle {stored.name} rev {stored.revision}", "", stored.digest
            )
            await self._store.add(stored, entry)
            logged(entry)
            self.latest_revision = stored.revision
            self._publish(BundlePublished(bundle=stored))
        return stored

    def now(self) -> float:
        return self._clock.wall()

    async def history(self, limit: int, before: int = 0) -> list[StoredBundle]:
        """The newest `limit` revisions older than `before` (0: the newest), newest first
        (artifacts left out)."""
        return await self._store.history(limit, before)

    async def revision(self, revision: int) -> StoredBundle | None:
        """Revision `revision` with its artifact (0: the latest); None when never pushed."""
        return await (self._store.latest() if revision == 0 else self._store.revision(revision))

    async def latest(self) -> StoredBundle | None:
        return await self._store.latest()

    async def report(
        self,
        *,
        instance_id: str,
        registered_agent: str | None,
        chain_owner: str | None,
        caller: Caller,
        active_revision: int,
        active_digest: str,
        refused_revision: int,
        refusal: str,
    ) -> None:
        """Records what a sidecar enforces. `registered_agent` is the agent of `instance_id` in
        the catalog (None when it is not there) and `chain_owner` the SPIFFE ID that shipped its
        receipt chain: a sidecar reports only as an instance its SVID owns
        (registry.reporter_ownership), so no agent invents sidecars of another."""
        identity = owned_reporter(
            caller, instance_id, registered_agent, chain_owner, "report the bundle status"
        ).identity
        status = SidecarBundleStatus(
            instance_id=instance_id,
            agent=identity.name,
            active_revision=active_revision,
            active_digest=active_digest,
            refused_revision=refused_revision,
            refusal=refusal[:MAX_REFUSAL_CHARS],
            reported_at=self._clock.wall(),
        )
        await self._store.put_status(status)
        if status.refusal:
            log.warning(
                "instance %s (%s) refused bundle revision %d: %s",
                status.instance_id,
                status.agent,
                status.refused_revision,
                status.refusal,
            )

    async def statuses(self) -> list[SidecarBundleStatus]:
        return await self._store.statuses()


def _check(raw: bytes, keys: Mapping[str, Ed25519PublicKey] | None) -> _Checked:
    """The pushed bundle's name, revision and digest, verified against `keys` when given.
    A trusted bundle is decoded once (by `verify`: 1 ms of the GIL for a 1,000-policy bundle);
    the artifact is decoded on its own only to say why one is refused, or without keys."""
    if keys is not None:
        try:
            verified = verify(raw, keys)
        except BundleError as exc:
            _decoded_and_signed(raw)  # malformed or unsigned: say that rather than "not trusted"
            raise InvalidInput(
                "artifact", f"is not trusted, so no sidecar would enforce it, and it is not stored: {exc}"
            ) from exc
        manifest = verified.contents.manifest
        return _Checked(name=manifest.name, revision=manifest.revision, digest=verified.digest)
    artifact, manifest = _decoded_and_signed(raw)
    log.warning(
        "bundle %s revision %d stored without verifying its signature: the registry has no --bundle-keys",
        manifest.name,
        manifest.revision,
    )
    return _Checked(name=manifest.name, revision=manifest.revision, digest=bundle_digest(artifact.digests))


def _decoded_and_signed(raw: bytes) -> tuple[Artifact, Manifest]:
    try:
        artifact = decode(raw)
        manifest = contents_of(artifact).manifest
    except BundleError as exc:
        raise InvalidInput("artifact", str(exc)) from exc
    if not artifact.signatures:
        raise InvalidInput("artifact", "is not signed; sign it with `meshwarden bundle sign` before pushing")
    return artifact, manifest
