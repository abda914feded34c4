"""A fresh key pair and a certificate signing request, made where the key will live.

The sidecar (or a test) keeps the private key and sends only the CSR to the registry's
issuer, which ignores the CSR's subject and names: the SPIFFE ID comes from the join token
or the presented SVID, never from what the requester asks for. EC P-256, because gRPC's TLS
(BoringSSL) offers no signature algorithm for Ed25519 certificates (checked with grpcio 1.85:
the handshake fails with NO_COMMON_SIGNATURE_ALGORITHMS).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


@dataclass(frozen=True)
class KeyAndCsr:
    private_key_pem: bytes = field(repr=False)
    csr_pem: bytes


def new_key_and_csr() -> KeyAndCsr:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    return KeyAndCsr(
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        csr_pem=csr.public_bytes(serialization.Encoding.PEM),
    )
