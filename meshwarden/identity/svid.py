"""An X.509 SVID as the mesh holds it: PEM bytes ready for gRPC credentials, plus the facts
(SPIFFE ID, expiry) that rotation and logging need. Private keys never reach a log line."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509


@dataclass(frozen=True)
class Svid:
    spiffe_id: str
    cert_chain_pem: bytes  # the SVID first, then intermediates
    private_key_pem: bytes = field(repr=False)
    trust_bundle_pem: bytes  # CA certificates of the trust domain
    not_before: float  # seconds since the epoch
    not_after: float

    def lifetime_fraction_left(self, now: float) -> float:
        span = self.not_after - self.not_before
        return 0.0 if span <= 0 else max(0.0, (self.not_after - now) / span)


def leaf_of(chain_pem: bytes) -> x509.Certificate:
    certs = x509.load_pem_x509_certificates(chain_pem)
    if not certs:
        raise ValueError("the certificate chain is empty")
    return certs[0]


def spiffe_ids_of(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [uri for uri in san.get_values_for_type(x509.UniformResourceIdentifier) if uri.startswith("spiffe://")]


def svid_from_pem(chain_pem: bytes, key_pem: bytes, bundle_pem: bytes) -> Svid:
    leaf = leaf_of(chain_pem)
    ids = spiffe_ids_of(leaf)
    if len(ids) != 1:
        raise ValueError(f"an X.509 SVID carries exactly one SPIFFE ID URI SAN; this one has {len(ids)}")
    return Svid(
        spiffe_id=ids[0],
        cert_chain_pem=chain_pem,
        private_key_pem=key_pem,
        trust_bundle_pem=bundle_pem,
        not_before=leaf.not_valid_before_utc.timestamp(),
        not_after=leaf.not_valid_after_utc.timestamp(),
    )
