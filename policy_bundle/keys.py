"""Ed25519 key files for bundle signing: generated once by `meshwarden bundle keygen`, the
private half kept by the platform team (0600), the public half configured on every sidecar
that must trust bundles signed with it. Both are PEM, readable by openssl."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from meshwarden.policy_bundle.errors import KeyFileError
from meshwarden.secure_files import write_atomically

KEY_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
KEY_ID_RULE: Final = "1-64 characters of letters, digits, '.', '_' and '-', starting with a letter or digit"


@dataclass(frozen=True, slots=True)
class KeyFiles:
    key_id: str
    private_key: Path  # <out_dir>/<key_id>.key, mode 0600
    public_key: Path  # <out_dir>/<key_id>.pub


def check_key_id(key_id: str) -> str:
    if not KEY_ID.fullmatch(key_id):
        raise KeyFileError(f"key id {key_id!r} must be {KEY_ID_RULE}")
    return key_id


def keygen(out_dir: Path, key_id: str) -> KeyFiles:
    """A new key pair in `out_dir`; never overwrites an existing key."""
    check_key_id(key_id)
    files = KeyFiles(key_id, out_dir / f"{key_id}.key", out_dir / f"{key_id}.pub")
    for path in (files.private_key, files.public_key):
        if path.exists():
            raise KeyFileError(f"{path} already exists; choose another --key-id or move the old key away first")
    if not out_dir.exists():
        out_dir.mkdir(parents=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_atomically(files.private_key, private_pem, mode=0o600)
    write_atomically(files.public_key, public_pem, mode=0o644)
    return files


def load_private_key(path: Path) -> Ed25519PrivateKey:
    hint = "an Ed25519 private key in PEM, unencrypted (create one with `meshwarden bundle keygen`)"
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{path} is not {hint}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not {hint}")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    hint = "an Ed25519 public key in PEM (the .pub file `meshwarden bundle keygen` wrote)"
    try:
        key = serialization.load_pem_public_key(_read(path))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{path} is not {hint}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} is not {hint}")
    return key


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
