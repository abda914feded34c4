"""`sign(bundle, key, key_id)`: the one signature a bundle carries.

The signature is Ed25519 over the canonical bytes of the bundle's file digests (see
artifact.py). Signing re-checks every file against its digest first, so a file edited
after `build` is never signed by accident.
"""

from __future__ import annotations

import dataclasses

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshwarden.policy_bundle import artifact as fmt
from meshwarden.policy_bundle.errors import AlreadySigned, DigestMismatch, SignatureCountWrong
from meshwarden.policy_bundle.keys import check_key_id


def sign(bundle: bytes, key: Ed25519PrivateKey, key_id: str) -> bytes:
    """The artifact `bundle` (unsigned, as build wrote it) with one signature by `key_id`."""
    check_key_id(key_id)
    artifact = fmt.decode(bundle)
    label = fmt.label_of(artifact)
    if len(artifact.signatures) == 1:
        raise AlreadySigned(artifact.signatures[0].key_id, bundle=label)
    if artifact.signatures:
        raise SignatureCountWrong(len(artifact.signatures), bundle=label)
    for path in sorted(set(artifact.files) | set(artifact.digests)):
        recorded = artifact.digests.get(path, "none")
        actual = fmt.file_digest(artifact.files[path]) if path in artifact.files else "none (file missing)"
        if recorded != actual:
            raise DigestMismatch(path, recorded, actual, bundle=label)
    fmt.contents_of(artifact)  # a bundle whose manifest is wrong is not worth a signature
    value = key.sign(fmt.signed_payload(artifact.digests))
    signature = fmt.Signature(key_id=key_id, algorithm=fmt.ALGORITHM, value=value)
    return fmt.encode(dataclasses.replace(artifact, signatures=(signature,)))
