"""The bundle signing keys a component trusts: `<key-id>.pub` files in one directory.

Sidecars verify every bundle they enforce against them; the registry, given the same public
keys, verifies a pushed bundle before storing it, so a bundle no sidecar would accept never
becomes the latest revision. Public keys only: signing keys stay with the platform team.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from meshwarden.policy_bundle.errors import KeyFileError
from meshwarden.policy_bundle.keys import load_public_key


def load_trusted_keys(directory: Path) -> dict[str, Ed25519PublicKey]:
    """Key id -> public key for every `<key-id>.pub` in `directory`; KeyFileError (naming the
    directory or file) when it cannot be read or holds no key at all."""
    try:
        files = sorted(directory.glob("*.pub"))
    except OSError as exc:
        raise KeyFileError(f"cannot read the bundle key directory {directory}: {exc.strerror}") from exc
    if not files:
        raise KeyFileError(f"{directory} holds no <key-id>.pub file; copy the platform team's public key there")
    return {f.stem: load_public_key(f) for f in files}
