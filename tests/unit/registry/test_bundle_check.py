"""registry.bundles' check of a pushed artifact: a trusted one is decoded once (by verify) and
gives its name, revision and digest; a refused one says why (malformed, unsigned, untrusted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshwarden.policy_bundle.build import build
from meshwarden.policy_bundle.verify import verify
from meshwarden.registry.bundles import _check
from meshwarden.registry.errors import InvalidInput
from tests.policy_helpers import KEY_ID, signed_bytes, write_bundle


def test_a_trusted_bundle_gives_what_verify_gives(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    raw = signed_bytes(write_bundle(tmp_path), key)
    keys = {KEY_ID: key.public_key()}
    expected = verify(raw, keys)
    for given in (keys, None):  # verified, or (without keys) only decoded
        checked = _check(raw, given)
        assert (checked.name, checked.revision, checked.digest) == (
            expected.manifest.name,
            expected.manifest.revision,
            expected.digest,
        )


@pytest.mark.parametrize("keys_given", [True, False])
def test_refusals_say_why(tmp_path: Path, keys_given: bool) -> None:
    key = Ed25519PrivateKey.generate()
    keys = {KEY_ID: key.public_key()} if keys_given else None
    unsigned = build(write_bundle(tmp_path)).to_bytes()
    with pytest.raises(InvalidInput, match="is not signed"):
        _check(unsigned, keys)
    with pytest.raises(InvalidInput):
        _check(b'{"not": "a bundle"}', keys)
    if keys_given:
        stranger = signed_bytes(tmp_path, Ed25519PrivateKey.generate())
        with pytest.raises(InvalidInput, match="is not trusted, so no sidecar would enforce it"):
            _check(stranger, keys)
