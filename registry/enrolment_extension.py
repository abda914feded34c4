"""Who enrolled an identity, written by the embedded issuer into the SVIDs it signs.

At enrolment the issuer adds one non-critical X.509 extension to the SVID: the operator
credential that made the join token, the token's id, the name its CLI claimed, and when.
Renew copies it from the certificate the sidecar presented over mTLS into the new one. So
"who let this instance in" comes from a certificate the registry signed and the handshake
verified, never from a field the sidecar sends, and it outlives the join token (forgotten a
week after it expires). A certificate without the extension says how it came to be by who
signed it: this registry's CA (someone holding the CA key signed it outside an enrolment) or
another CA the registry trusts (SPIRE).

The extension's value is a DER UTF8String holding compact JSON; its OID is a UUID OID
(2.25.<uuid>, ITU-T X.667), which needs no registration. Verifiers that do not know it ignore
it, as they must a non-critical extension.
"""

from __future__ import annotations

import json
import logging
from typing import Final

from cryptography import x509

from meshwarden.registry.model import CA_KEY, JOIN_TOKEN, OPEN_ENROLMENT, SPIRE, Enrolment

log = logging.getLogger(__name__)

OID: Final = x509.ObjectIdentifier("2.25.53129915494304329639153837424667342784")
_UTF8STRING: Final = 0x0C
RECORDED: Final = (JOIN_TOKEN, OPEN_ENROLMENT)  # what an enrolment writes; the rest is read from the issuer
MAX_FIELD_CHARS: Final = 128


def extension(enrolment: Enrolment) -> x509.UnrecognizedExtension:
    """The extension recording `enrolment` (a join token's or an open enrolment's)."""
    if enrolment.how not in RECORDED:
        raise ValueError(f"only an enrolment is written into an SVID, not {enrolment.how!r}")
    body = {
        "how": enrolment.how,
        "principal": enrolment.principal,
        "token_id": enrolment.token_id,
        "claimed_user": enrolment.claimed_user,
        "enrolled_at": round(enrolment.enrolled_at, 3),
    }
    return x509.UnrecognizedExtension(OID, _der_utf8(json.dumps(body, separators=(",", ":"))))


def enrolment_of(certificate: x509.Certificate, ca_key_id: bytes) -> Enrolment:
    """What `certificate` (verified by the TLS handshake) says about how it came to be.

    `ca_key_id` is the subject key identifier of this registry's CA. Only a certificate it
    signed speaks for an enrolment here: one another CA the registry trusts signed (SPIRE) is
    shown as that CA's, extension or not, since only this registry's issuer writes it; one it
    signed without the extension was made with the CA key outside an enrolment."""
    if _issuer_key_id(certificate) != ca_key_id:
        return Enrolment(how=SPIRE, principal=SPIRE)
    try:
        value = certificate.extensions.get_extension_for_oid(OID).value
    except x509.ExtensionNotFound:
        return Enrolment(how=CA_KEY, principal=CA_KEY)
    recorded = _parse(value.value) if isinstance(value, x509.UnrecognizedExtension) else None
    if recorded is None:  # signed by a CA the registry trusts, so a bug rather than an attack
        log.warning(
            "the enrolment extension of certificate %x is damaged; showing it as %s", certificate.serial_number, CA_KEY
        )
        return Enrolment(how=CA_KEY, principal=CA_KEY)
    return recorded


def _issuer_key_id(certificate: x509.Certificate) -> bytes | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def _parse(der: bytes) -> Enrolment | None:
    text = _read_der_utf8(der)
    if text is None:
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    strings = [body.get(key) for key in ("how", "principal", "token_id", "claimed_user")]
    at = body.get("enrolled_at")
    if not all(isinstance(s, str) and len(s) <= MAX_FIELD_CHARS for s in strings) or not isinstance(at, (int, float)):
        return None
    how, principal, token_id, claimed_user = (str(s) for s in strings)
    if how not in RECORDED or not principal:
        return None
    return Enrolment(how=how, principal=principal, token_id=token_id, claimed_user=claimed_user, enrolled_at=float(at))


def _der_utf8(text: str) -> bytes:
    data = text.encode()
    n = len(data)
    if n < 0x80:
        length = bytes([n])
    else:
        size = (n.bit_length() + 7) // 8
        length = bytes([0x80 | size]) + n.to_bytes(size, "big")
    return bytes([_UTF8STRING]) + length + data


def _read_der_utf8(der: bytes) -> str | None:
    if len(der) < 2 or der[0] != _UTF8STRING:
        return None
    first, offset = der[1], 2
    if first < 0x80:
        length = first
    else:
        size = first & 0x7F
        if size == 0 or size > 2 or len(der) < 2 + size:
            return None
        length, offset = int.from_bytes(der[2 : 2 + size], "big"), 2 + size
    if len(der) != offset + length:
        return None
    try:
        return der[offset:].decode()
    except UnicodeDecodeError:
        return None
