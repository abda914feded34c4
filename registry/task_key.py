"""The registry's task-signing key: Ed25519, in `<data_dir>/task-signing.key` (0600), created
on first start and kept across restarts, so claims signed before a restart stay verifiable.
Its public half is what sidecars verify fencing claims with (meshwarden.task_fence)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshwarden.registry.private_files import read_private, write_private

KEY_NAME: Final = "task-signing.key"


def load_or_create(data_dir: Path) -> Ed25519PrivateKey:
    path = data_dir / KEY_NAME
    if path.exists():
        key = serialization.load_pem_private_key(read_private(path), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} holds no Ed25519 key; move it away and restart to create one")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private(path, pem)
    return key
