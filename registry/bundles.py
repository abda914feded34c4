"""Policy bundle revisions: stored, distributed, and what each sidecar reports it enforces.

The registry checks that a pushed artifact is a well-formed bundle and that its revision is
newer than every revision pushed before. Given the trusted public keys (`--bundle-keys`, the
same the sidecars hold; never a signing key), it verifies the signature and every file first,
so a bundle no sidecar would accept (an edited manifest, a stranger's key) is refused at push
and never becomes the latest revision that later pushes must beat and new sidecars receive.
Without keys it cannot judge signatures and says so on every push; every sidecar verifies
anyway, and reports back what it enforces or why it refused. All revisions are kept (an audit trail, and the
material for a rollback by pushing an old bundle again under a new revision).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from meshwarden.clock import Clock
from meshwarden.policy_bundle.artifact import bundle_digest, contents_of, decode
from meshwarden.policy_bundle.errors import BundleError
from meshwarden.policy_bundle.verify import verify
from meshwarden.registry.errors import Conflict, InvalidInput
from meshwarden.registry.store import Store

log = logging.getLogger(__name__)

MAX_ARTIFACT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredBundle:
    name: str
    revision: int
    digest: str
    artifact: bytes
    pushed_at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class BundlePublished:
    """A hub event: a new revision for every watcher (catalog revisions are not affected)."""

    bundle: StoredBundle


@dataclass(frozen=True, kw_only=True, slots=True)
class SidecarBundleStatus:
    instance_id: str
    agent: str
    active_revision: int
    active_digest: str
    refused_revision: int
    refusal: str
    reported_at: float


class Bundles:
    def __init__(
        self, store: Store, clock: Clock, *, trusted_keys: Mapping[str, Ed25519PublicKey] | None = None
    ) -> None:
        self._store, self._clock, self._keys = store, clock, trusted_keys

    def push(self, raw: bytes) -> StoredBundle:
        if len(raw) > MAX_ARTIFACT_BYTES:
            raise InvalidInput("artifact", f"is {len(raw)} bytes, over the limit of {MAX_ARTIFACT_BYTES}")
        try:
            artifact = decode(raw)
            manifest = contents_of(artifact).manifest
        except BundleError as exc:
            raise InvalidInput("artifact", str(exc)) from exc
        if not artifact.signatures:
            raise InvalidInput("artifact", "is not signed; sign it with `meshwarden bundle sign` before pushing")
        if self._keys is None:
            log.warning(
                "bundle %s revision %d stored without verifying its signature: the registry has no --bundle-keys",
                manifest.name,
                manifest.revision,
            )
        else:
            try:
                verify(raw, self._keys)
            except BundleError as exc:
                raise InvalidInput(
                    "artifact", f"is not trusted, so no sidecar would enforce it, and it is not stored: {exc}"
                ) from exc
        latest = self.latest()
        if latest is not None and manifest.revision <= latest.revision:
            raise Conflict(
                f"bundle {manifest.name} revision {manifest.revision} is not newer than revision {latest.revision} "
                f"({latest.name}) already pushed; raise `revision` in manifest.toml and build again"
            )
        if latest is not None and manifest.name != latest.name:
            raise Conflict(
                f"this mesh runs bundle {latest.name!r}; a bundle named {manifest.name!r} would replace it. "
                "Keep the name (one policy bundle per mesh)"
            )
        stored = StoredBundle(
            name=manifest.name,
            revision=manifest.revision,
            digest=bundle_digest(artifact.digests),
            artifact=raw,
            pushed_at=self._clock.wall(),
        )
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO policy_bundles (revision, name, digest, artifact, pushed_at) VALUES (?, ?, ?, ?, ?)",
                (stored.revision, stored.name, stored.digest, stored.artifact, stored.pushed_at),
            )
        log.info("bundle %s revision %d pushed (%s)", stored.name, stored.revision, stored.digest)
        return stored

    def now(self) -> float:
        return self._clock.wall()

    def latest(self) -> StoredBundle | None:
        rows = self._store.query(
            "SELECT name, revision, digest, artifact, pushed_at FROM policy_bundles ORDER BY revision DESC LIMIT 1"
        )
        if not rows:
            return None
        name, revision, digest, artifact, pushed_at = rows[0]
        return StoredBundle(name=name, revision=revision, digest=digest, artifact=bytes(artifact), pushed_at=pushed_at)

    def report(
        self,
        *,
        instance_id: str,
        agent: str,
        active_revision: int,
        active_digest: str,
        refused_revision: int,
        refusal: str,
    ) -> None:
        status = SidecarBundleStatus(
            instance_id=instance_id,
            agent=agent,
            active_revision=active_revision,
            active_digest=active_digest,
            refused_revision=refused_revision,
            refusal=refusal,
            reported_at=self._clock.wall(),
        )
        with self._store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO bundle_status (instance_id, agent, active_revision, active_digest, "
                "refused_revision, refusal, reported_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    status.instance_id,
                    status.agent,
                    status.active_revision,
                    status.active_digest,
                    status.refused_revision,
                    status.refusal,
                    status.reported_at,
                ),
            )
        if status.refusal:
            log.warning(
                "instance %s (%s) refused bundle revision %d: %s",
                status.instance_id,
                status.agent,
                status.refused_revision,
                status.refusal,
            )

    def statuses(self) -> list[SidecarBundleStatus]:
        rows = self._store.query(
            "SELECT instance_id, agent, active_revision, active_digest, refused_revision, refusal, reported_at "
            "FROM bundle_status ORDER BY agent, instance_id"
        )
        return [
            SidecarBundleStatus(
                instance_id=r[0],
                agent=r[1],
                active_revision=r[2],
                active_digest=r[3],
                refused_revision=r[4],
                refusal=r[5],
                reported_at=r[6],
            )
            for r in rows
        ]
