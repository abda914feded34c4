"""What policy tests need: a bundle directory to edit, a signing key, a verified bundle.

Shared by tests/unit/policy_bundle, tests/unit/sidecar/policy and tests/unit/cli, so each
starts from the same starting bundle `meshwarden bundle init` writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshwarden.policy_bundle.build import build
from meshwarden.policy_bundle.init import starting_files
from meshwarden.policy_bundle.sign import sign
from meshwarden.policy_bundle.verify import VerifiedBundle, verify

KEY_ID = "test-key"


def write_bundle(directory: Path, files: Mapping[str, str | None] | None = None) -> Path:
    """The starting bundle in `directory`, with `files` replacing (or, when None, removing) some."""
    contents: dict[str, str | None] = {**starting_files(), **(files or {})}
    for relative, text in contents.items():
        path = directory / relative
        if text is None:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return directory


def signed_bytes(directory: Path, key: Ed25519PrivateKey, key_id: str = KEY_ID) -> bytes:
    return sign(build(directory).to_bytes(), key, key_id)


def verified(directory: Path, files: Mapping[str, str | None] | None = None) -> VerifiedBundle:
    """The bundle written from `files` over the starting bundle, built, signed and verified."""
    write_bundle(directory, files)
    key = Ed25519PrivateKey.generate()
    return verify(signed_bytes(directory, key), {KEY_ID: key.public_key()})
