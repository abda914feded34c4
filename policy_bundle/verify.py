"""`verify(raw, trusted_keys)`: a bundle's bytes become a VerifiedBundle, or nothing.

In OPA's order (v1/bundle/verify.go): exactly one signature; its key chosen by key id among
the trusted keys; the signature checked over the signed digests; then every file against
its signed digest (a mismatch names the file with the expected and actual hash), and no
file without one. Any failure raises; there is no partially trusted bundle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from meshwarden.policy_bundle import artifact as fmt
from meshwarden.policy_bundle.errors import (
    BundleNotTrusted,
    DigestMismatch,
    RevisionNotNewer,
    SignatureCountWrong,
    SignatureInvalid,
    UnknownKeyId,
)
from meshwarden.policy_bundle.manifest import Manifest


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    contents: fmt.BundleContents
    digest: str  # "sha256:<hex>" over the signed digests: this revision's fingerprint
    key_id: str  # the trusted key that signed it

    @property
    def manifest(self) -> Manifest:
        return self.contents.manifest


def verify(
    raw: bytes, trusted_keys: Mapping[str, Ed25519PublicKey], *, newer_than: int | None = None
) -> VerifiedBundle:
    """The bundle in `raw`, if signed by exactly one trusted key and intact.

    `newer_than`: the revision in use, if any; an older or equal revision is refused
    (RevisionNotNewer) so a replayed old bundle cannot roll policy back."""
    artifact = fmt.decode(raw)
    label = fmt.label_of(artifact)  # a claim until verified; only used to name the bundle in errors
    if len(artifact.signatures) != 1:
        raise SignatureCountWrong(len(artifact.signatures), bundle=label)
    signature = artifact.signatures[0]
    if signature.algorithm != fmt.ALGORITHM:
        raise SignatureInvalid(
            f"signature algorithm {signature.algorithm!r} is not accepted; only {fmt.ALGORITHM}", bundle=label
        )
    key = trusted_keys.get(signature.key_id)
    if key is None:
        raise UnknownKeyId(signature.key_id, list(trusted_keys), bundle=label)
    try:
        key.verify(signature.value, fmt.signed_payload(artifact.digests))
    except InvalidSignature as exc:
        raise SignatureInvalid(
            f"the signature by key {signature.key_id!r} does not verify: the signed digests were changed, "
            "or it was made by another key with the same id; do not use this bundle",
            bundle=label,
        ) from exc
    _check_files(artifact, label)
    contents = fmt.contents_of(artifact)
    if newer_than is not None and contents.manifest.revision <= newer_than:
        raise RevisionNotNewer(contents.manifest.revision, newer_than, bundle=contents.manifest.label)
    return VerifiedBundle(contents=contents, digest=fmt.bundle_digest(artifact.digests), key_id=signature.key_id)


def _check_files(artifact: fmt.Artifact, label: str) -> None:
    for path in sorted(artifact.files):
        expected = artifact.digests.get(path)
        if expected is None:
            raise BundleNotTrusted(f"{path} is not covered by the signature; do not use this bundle", bundle=label)
        actual = fmt.file_digest(artifact.files[path])
        if actual != expected:
            raise DigestMismatch(path, expected, actual, bundle=label)
    missing = sorted(set(artifact.digests) - set(artifact.files))
    if missing:
        raise BundleNotTrusted(
            f"{missing[0]} is signed but missing from the bundle; fetch the bundle again", bundle=label
        )
