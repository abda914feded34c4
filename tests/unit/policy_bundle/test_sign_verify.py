"""policy_bundle.sign, verify and keys: exactly one trusted signature, every file intact."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshwarden.policy_bundle import artifact as fmt
from meshwarden.policy_bundle.build import build
from meshwarden.policy_bundle.errors import (
    AlreadySigned,
    BundleError,
    BundleNotTrusted,
    BundleUnreadable,
    DigestMismatch,
    KeyFileError,
    RevisionNotNewer,
    SignatureCountWrong,
    SignatureInvalid,
    UnknownKeyId,
)
from meshwarden.policy_bundle.keys import keygen, load_private_key, load_public_key
from meshwarden.policy_bundle.sign import sign
from meshwarden.policy_bundle.verify import verify
from tests.policy_helpers import KEY_ID, write_bundle

KEY = Ed25519PrivateKey.generate()
TRUSTED = {KEY_ID: KEY.public_key()}


@pytest.fixture
def signed(tmp_path: Path) -> bytes:
    return sign(build(write_bundle(tmp_path)).to_bytes(), KEY, KEY_ID)


def _edit(raw: bytes, change: dict[str, object]) -> bytes:
    document = json.loads(raw)
    document.update(change)
    return json.dumps(document).encode()


def test_a_signed_bundle_verifies(signed: bytes) -> None:
    bundle = verify(signed, TRUSTED)
    assert bundle.manifest.label == "bundle demo rev 1"
    assert bundle.key_id == KEY_ID and bundle.digest.startswith("sha256:")
    assert [f.path for f in bundle.contents.policy_files][0] == "policies/baseline.cedar"


def test_one_changed_byte_in_a_file_names_the_file_and_both_digests(signed: bytes) -> None:
    at = signed.index(b"risk_tier <= 2")
    tampered = signed[:at] + b"R" + signed[at + 1 :]
    with pytest.raises(DigestMismatch) as info:
        verify(tampered, TRUSTED)
    document = json.loads(tampered)
    expected = document["digests"]["policies/baseline.cedar"]
    actual = fmt.file_digest(document["files"]["policies/baseline.cedar"])
    assert (info.value.file, info.value.expected, info.value.actual) == ("policies/baseline.cedar", expected, actual)
    assert str(info.value).startswith(
        f"bundle demo rev 1: policies/baseline.cedar does not match its signed digest: expected {expected}, actual {actual}"
    )


def test_no_single_byte_flip_anywhere_is_accepted(signed: bytes) -> None:
    """No partial trust: whatever byte changes, verify refuses (and never with anything but a BundleError)."""
    for position in range(len(signed)):
        tampered = signed[:position] + bytes([signed[position] ^ 0x01]) + signed[position + 1 :]
        with pytest.raises(BundleError):
            verify(tampered, TRUSTED)


def test_a_changed_digest_breaks_the_signature(signed: bytes) -> None:
    document = json.loads(signed)
    document["digests"]["entities.json"] = "sha256:" + "0" * 64
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify(json.dumps(document).encode(), TRUSTED)


def test_an_unknown_key_id_is_named(signed: bytes) -> None:
    with pytest.raises(UnknownKeyId) as info:
        verify(signed, {"other-key": KEY.public_key()})
    assert info.value.key_id == KEY_ID
    assert "signed with key id 'test-key', which is not trusted here (trusted: other-key)" in str(info.value)


def test_the_same_key_id_with_another_key_does_not_verify(signed: bytes) -> None:
    with pytest.raises(SignatureInvalid):
        verify(signed, {KEY_ID: Ed25519PrivateKey.generate().public_key()})


def test_no_signature_or_two_signatures_are_refused(signed: bytes) -> None:
    document = json.loads(signed)
    with pytest.raises(SignatureCountWrong, match="carries 0 signatures; exactly one is accepted"):
        verify(_edit(signed, {"signatures": []}), TRUSTED)
    twice = document["signatures"] * 2
    with pytest.raises(SignatureCountWrong, match="carries 2 signatures"):
        verify(_edit(signed, {"signatures": twice}), TRUSTED)


def test_files_must_be_exactly_the_signed_ones(signed: bytes) -> None:
    document = json.loads(signed)
    extra = {**document["files"], "policies/extra.cedar": "permit (principal, action, resource);"}
    with pytest.raises(BundleNotTrusted, match="policies/extra.cedar is not covered by the signature"):
        verify(_edit(signed, {"files": extra}), TRUSTED)
    missing = {k: v for k, v in document["files"].items() if k != "policies/tiers.cedar"}
    with pytest.raises(BundleNotTrusted, match="policies/tiers.cedar is signed but missing"):
        verify(_edit(signed, {"files": missing}), TRUSTED)


@pytest.mark.parametrize(
    "raw",
    [b"", b"\xff\xfe", b"[]", b'{"format": "meshwarden-policy-bundle/1"}', b'{"a": 1, "a": 2}'],
)
def test_unparsable_input_is_unreadable(raw: bytes) -> None:
    with pytest.raises(BundleUnreadable):
        verify(raw, TRUSTED)


def test_another_format_version_is_unreadable(signed: bytes) -> None:
    with pytest.raises(BundleUnreadable, match="is not 'meshwarden-policy-bundle/1'"):
        verify(_edit(signed, {"format": "meshwarden-policy-bundle/2"}), TRUSTED)


def test_older_revisions_are_refused_as_rollbacks(signed: bytes) -> None:
    assert verify(signed, TRUSTED, newer_than=0).manifest.revision == 1
    with pytest.raises(RevisionNotNewer, match="revision 1 is not newer than the active revision 1"):
        verify(signed, TRUSTED, newer_than=1)


def test_sign_refuses_a_signed_bundle_and_a_modified_one(tmp_path: Path, signed: bytes) -> None:
    with pytest.raises(AlreadySigned, match="already signed"):
        sign(signed, KEY, KEY_ID)
    raw = build(write_bundle(tmp_path / "other")).to_bytes()
    document = json.loads(raw)
    document["files"]["entities.json"] = "[]"
    with pytest.raises(DigestMismatch, match="entities.json does not match"):
        sign(json.dumps(document).encode(), KEY, KEY_ID)
    with pytest.raises(KeyFileError, match="key id 'a b' must be"):
        sign(raw, KEY, "a b")


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    files = keygen(tmp_path / "keys", "platform-1")
    assert stat.S_IMODE(files.private_key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    raw = build(write_bundle(tmp_path / "bundle")).to_bytes()
    signed = sign(raw, load_private_key(files.private_key), "platform-1")
    assert verify(signed, {"platform-1": load_public_key(files.public_key)}).key_id == "platform-1"
    with pytest.raises(KeyFileError, match="already exists"):
        keygen(tmp_path / "keys", "platform-1")


def test_key_files_of_the_wrong_kind_are_refused(tmp_path: Path) -> None:
    files = keygen(tmp_path, "k")
    with pytest.raises(KeyFileError, match="is not an Ed25519 private key"):
        load_private_key(files.public_key)
    with pytest.raises(KeyFileError, match="is not an Ed25519 public key"):
        load_public_key(files.private_key)
    with pytest.raises(KeyFileError, match="cannot read key file"):
        load_public_key(tmp_path / "absent.pub")
