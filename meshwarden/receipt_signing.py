"""Signed chain heads: proof that a receipt chain comes from the sidecar that wrote it.

A receipt's hash covers the hash before it, so a signature over a chain's head (instance id,
seq, hash) vouches for every receipt up to that seq. The shipping sidecar signs the head after
each batch with its SVID's private key (off the call path); the registry checks the signature
and that the certificate is an SVID of its trust domain's CA before it stores the batch, and
`receipts verify` checks the stored head's signature again. The registry holds no private key
of any sidecar, so neither it nor anyone who can edit its database can forge a chain that
passes: a rewrite that recomputes every hash still lacks the signature.

Certificate time is checked when a head arrives (`check_head(..., now=...)`), not when it is
verified later: an SVID lives for hours, receipts for much longer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from meshwarden.identity.svid import Svid, spiffe_ids_of
from meshwarden.v1 import receipts_pb2

_DOMAIN: Final = b"meshwarden receipt chain head v1\n"
MAX_CHAIN_CERTIFICATES: Final = 4
MAX_CERTIFICATE_BYTES: Final = 16 * 1024
MAX_SIGNATURE_BYTES: Final = 1024
CLOCK_SKEW_S: Final = 300.0


class HeadSignatureError(Exception):
    """A signed head that does not prove what it claims; the message says what is wrong."""


def head_message(sidecar_instance_id: str, seq: int, hash_: str) -> bytes:
    """The bytes a head signature covers (a fixed prefix keeps them from meaning anything else)."""
    return _DOMAIN + f"{sidecar_instance_id}\n{seq}\n{hash_}".encode()


def sign_head(svid: Svid, sidecar_instance_id: str, seq: int, hash_: str) -> receipts_pb2.SignedHead:
    """The head (seq, hash) of `sidecar_instance_id`'s chain, signed with `svid`'s key."""
    key = serialization.load_pem_private_key(svid.private_key_pem, password=None)
    message = head_message(sidecar_instance_id, seq, hash_)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(message)
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise HeadSignatureError(f"an SVID key of type {type(key).__name__} cannot sign receipt heads")
    chain = [
        cert.public_bytes(serialization.Encoding.DER) for cert in x509.load_pem_x509_certificates(svid.cert_chain_pem)
    ]
    return receipts_pb2.SignedHead(
        sidecar_instance_id=sidecar_instance_id, seq=seq, hash=hash_, signature=signature, certificate_chain=chain
    )


def check_head(head: receipts_pb2.SignedHead, trust_bundle_pem: bytes, *, now: float | None = None) -> str:
    """The SPIFFE ID that signed `head`, once its signature, its certificate chain up to a CA of
    `trust_bundle_pem` and (when `now` is given) the signing SVID's validity all check out."""
    chain = _certificates(head.certificate_chain)
    leaf = chain[0]
    ids = spiffe_ids_of(leaf)
    if len(ids) != 1:
        raise HeadSignatureError(f"the signing certificate carries {len(ids)} SPIFFE IDs; an SVID carries one")
    _check_issued(chain, trust_bundle_pem)
    if now is not None and not (
        leaf.not_valid_before_utc.timestamp() - CLOCK_SKEW_S
        <= now
        <= leaf.not_valid_after_utc.timestamp() + CLOCK_SKEW_S
    ):
        raise HeadSignatureError(f"the signing SVID of {ids[0]} is not valid now (expired or not yet valid)")
    if len(head.signature) > MAX_SIGNATURE_BYTES:
        raise HeadSignatureError(f"the signature is {len(head.signature)} bytes; at most {MAX_SIGNATURE_BYTES}")
    _check_signature(leaf, head.signature, head_message(head.sidecar_instance_id, head.seq, head.hash))
    return ids[0]


def _certificates(chain: Sequence[bytes]) -> list[x509.Certificate]:
    if not chain:
        raise HeadSignatureError("no signing certificate")
    if len(chain) > MAX_CHAIN_CERTIFICATES or any(len(der) > MAX_CERTIFICATE_BYTES for der in chain):
        raise HeadSignatureError(
            f"the certificate chain is too large (at most {MAX_CHAIN_CERTIFICATES} of {MAX_CERTIFICATE_BYTES} bytes)"
        )
    try:
        return [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError as exc:
        raise HeadSignatureError(f"a signing certificate is unreadable: {exc}") from exc


def _check_issued(chain: list[x509.Certificate], trust_bundle_pem: bytes) -> None:
    """Each certificate issued by the next; the last by a CA of the trust bundle."""
    try:
        anchors = x509.load_pem_x509_certificates(trust_bundle_pem)
    except ValueError as exc:
        raise HeadSignatureError(f"the trust bundle is unreadable: {exc}") from exc
    for child, parent in zip(chain, chain[1:], strict=False):
        if not _issued_by(child, parent):
            raise HeadSignatureError("the signing certificate chain is broken (a certificate not issued by the next)")
    if not any(_issued_by(chain[-1], anchor) for anchor in anchors):
        raise HeadSignatureError("the signing SVID was not issued by this trust domain's CA")


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_signature(leaf: x509.Certificate, signature: bytes, message: bytes) -> None:
    key = leaf.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise HeadSignatureError(f"a {type(key).__name__} key cannot sign receipt heads")
    except InvalidSignature as exc:
        raise HeadSignatureError("the head's signature does not match its contents and signing SVID") from exc
