"""The embedded SPIFFE issuer: a CA in the registry's data directory that signs X.509 SVIDs.

On one machine without SPIRE this is where every identity in the mesh comes from. The CA is
made at first start in `<data-dir>/ca/` (directory 0700): `ca.key` (PKCS#8 PEM, 0600, written
atomically, see registry.private_files) and `ca.crt`. EC P-256 throughout, because gRPC's TLS
cannot use Ed25519 certificates (meshwarden.identity.csr). The CA certificate carries the URI
SAN `spiffe://<trust-domain>`, as a SPIFFE bundle CA does, and is valid for one year.
Rotating the CA is not supported yet: when it nears its end the registry warns, and after it
the registry refuses to start and says how to make a new one (every sidecar enrols again).

SVIDs carry exactly one URI SAN (the SPIFFE ID) and one DNS SAN derived from it
(spiffe_ids.dns_name: gRPC clients check that name), are no CA, may sign (digitalSignature,
plus keyEncipherment for RSA keys), serve both ends of a connection (EKU serverAuth and
clientAuth), start 60 s in the past to forgive clock skew, and never outlive the CA. The
subject and names a CSR asks for are ignored: the caller decides the SPIFFE ID.

No private key is ever logged or put in an exception message.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshwarden.clock import Clock
from meshwarden.identity.bootstrap import fingerprint
from meshwarden.identity.spiffe_ids import IdentityError, check_trust_domain, dns_name, parse
from meshwarden.identity.svid import Svid
from meshwarden.registry import enrolment_extension
from meshwarden.registry.errors import CaError, InvalidInput
from meshwarden.registry.model import Enrolment
from meshwarden.registry.private_files import PrivateFileError, make_private_dir, read_private, write_private

log = logging.getLogger(__name__)

CA_DIR_NAME: Final = "ca"
CA_KEY_FILE: Final = "ca.key"
CA_CERT_FILE: Final = "ca.crt"
CA_VALIDITY_S: Final = 365 * 24 * 3600.0
CA_EXPIRY_WARNING_S: Final = 30 * 24 * 3600.0
CLOCK_SKEW_S: Final = 60.0
MIN_RSA_BITS: Final = 2048
_ACCEPTED_CURVES: Final = (ec.SECP256R1, ec.SECP384R1)

CsrKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@dataclass(frozen=True)
class Issued:
    """A signed SVID certificate, for a requester that holds the private key itself."""

    spiffe_id: str
    chain_pem: bytes  # the SVID certificate only: the trust bundle carries the CA
    not_after: float  # seconds since the epoch


class Issuer:
    """Signs SVIDs for one trust domain with one CA key.

    Make it with `Issuer.open(ca_dir, trust_domain, clock)` (load, or create at first start),
    `Issuer.load(ca_dir, clock)` (an existing CA only), or `Issuer.ephemeral(trust_domain,
    clock)` (in memory: tests use it to make a foreign CA).
    """

    def __init__(self, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, clock: Clock) -> None:
        self._cert, self._key, self._clock = ca_cert, ca_key, clock
        self._trust_domain = _trust_domain_of(ca_cert)
        self._bundle_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
        self._fingerprint = fingerprint(ca_cert)

    @classmethod
    def open(cls, ca_dir: Path, trust_domain: str, clock: Clock) -> Issuer:
        """The CA in `ca_dir`, created there first if the directory holds none."""
        check_trust_domain(trust_domain)
        key_path, cert_path = ca_dir / CA_KEY_FILE, ca_dir / CA_CERT_FILE
        if not key_path.exists() and not cert_path.exists():
            return cls._create(ca_dir, trust_domain, clock)
        issuer = cls.load(ca_dir, clock)
        if issuer.trust_domain != trust_domain:
            raise CaError(
                f"the CA in {ca_dir} is for trust domain {issuer.trust_domain!r}, but the registry is "
                f"configured for {trust_domain!r}; set --trust-domain {issuer.trust_domain} or use another --data-dir"
            )
        return issuer

    @classmethod
    def load(cls, ca_dir: Path, clock: Clock) -> Issuer:
        key_path, cert_path = ca_dir / CA_KEY_FILE, ca_dir / CA_CERT_FILE
        for present, missing in ((key_path, cert_path), (cert_path, key_path)):
            if present.exists() and not missing.exists():
                raise CaError(
                    f"{ca_dir} holds {present.name} but not {missing.name}; restore {missing} from a backup, "
                    f"or move {ca_dir} away to make a new CA (every sidecar must then enrol again)"
                )
        try:
            key = serialization.load_pem_private_key(read_private(key_path), password=None)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except PrivateFileError as exc:
            raise CaError(str(exc)) from exc
        except (OSError, ValueError, TypeError):
            # the message names the file only: a parser's message might quote key material
            raise CaError(f"cannot read the CA in {ca_dir}: {key_path.name} or {cert_path.name} is damaged") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            raise CaError(f"{key_path} is not the key of {cert_path}; restore the pair from a backup")
        issuer = cls(cert, key, clock)
        issuer._check_validity(ca_dir)
        return issuer

    @classmethod
    def ephemeral(cls, trust_domain: str, clock: Clock, *, validity_s: float = CA_VALIDITY_S) -> Issuer:
        """A CA that lives in memory only: for tests (a foreign CA, another trust domain)."""
        check_trust_domain(trust_domain)
        key = ec.generate_private_key(ec.SECP256R1())
        return cls(_ca_certificate(key, trust_domain, clock.wall(), validity_s), key, clock)

    @property
    def trust_domain(self) -> str:
        return self._trust_domain

    @property
    def bundle_pem(self) -> bytes:
        """The trust bundle: the CA certificate, PEM."""
        return self._bundle_pem

    @property
    def fingerprint(self) -> str:
        """ "sha256:<hex>" of the CA certificate; join tokens and --ca-pin carry it."""
        return self._fingerprint

    @property
    def ca_not_after(self) -> float:
        return self._cert.not_valid_after_utc.timestamp()

    def check_csr(self, csr_pem: bytes) -> CsrKey:
        """The CSR's public key, once its signature proves the requester holds the private key.

        Raises InvalidInput("csr_pem", ...) saying what is wrong."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError:
            raise InvalidInput("csr_pem", "is not a PEM certificate signing request") from None
        try:
            valid = csr.is_signature_valid
        except (InvalidSignature, ValueError, TypeError):
            valid = False
        if not valid:
            raise InvalidInput("csr_pem", "has a signature that does not match its public key")
        public_key = csr.public_key()
        if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, _ACCEPTED_CURVES):
            return public_key
        if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size >= MIN_RSA_BITS:
            return public_key
        raise InvalidInput(
            "csr_pem",
            f"has a {_describe(public_key)} key; use EC P-256 (or P-384, or RSA of at least {MIN_RSA_BITS} bits): "
            "gRPC's TLS cannot use Ed25519 certificates",
        )

    @property
    def key_id(self) -> bytes:
        """The CA's subject key identifier: what the SVIDs it signs carry as authority key id."""
        return x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()).digest

    def sign_csr(self, csr_pem: bytes, spiffe_id: str, ttl_s: float, *, enrolment: Enrolment | None = None) -> Issued:
        """An SVID for `spiffe_id` (of this trust domain) on the CSR's key, valid `ttl_s` from now,
        recording `enrolment` (who let it in: registry.enrolment_extension) when given."""
        self._require_own(spiffe_id)
        public_key = self.check_csr(csr_pem)
        now = self._clock.wall()
        extra = () if enrolment is None else (enrolment_extension.extension(enrolment),)
        cert = self._sign_leaf(public_key, spiffe_id, dns_name(spiffe_id), now - CLOCK_SKEW_S, now + ttl_s, extra)
        return Issued(spiffe_id, cert.public_bytes(serialization.Encoding.PEM), cert.not_valid_after_utc.timestamp())

    def issue(self, spiffe_id: str, ttl_s: float) -> Svid:
        """An SVID with a fresh key: the registry's own, and tests'."""
        self._require_own(spiffe_id)
        now = self._clock.wall()
        return self.issue_between(spiffe_id, now - CLOCK_SKEW_S, now + ttl_s)

    def issue_between(self, spiffe_id: str, not_before: float, not_after: float, *, dns: str | None = None) -> Svid:
        """An SVID with a fresh key and the validity given, unchecked SPIFFE ID: tests use it
        to make expired SVIDs and SVIDs for another trust domain or a malformed path."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._sign_leaf(key.public_key(), spiffe_id, dns or dns_name(spiffe_id), not_before, not_after)
        return Svid(
            spiffe_id=spiffe_id,
            cert_chain_pem=cert.public_bytes(serialization.Encoding.PEM),
            private_key_pem=key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            trust_bundle_pem=self._bundle_pem,
            not_before=cert.not_valid_before_utc.timestamp(),
            not_after=cert.not_valid_after_utc.timestamp(),
        )

    def _sign_leaf(
        self,
        public_key: CsrKey,
        spiffe_id: str,
        dns: str,
        not_before: float,
        not_after: float,
        extra: tuple[x509.UnrecognizedExtension, ...] = (),
    ) -> x509.Certificate:
        not_after = min(not_after, self.ca_not_after)  # an SVID never outlives its CA
        is_rsa = isinstance(public_key, rsa.RSAPublicKey)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshwarden")]))
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(_serial())
            .not_valid_before(_utc(not_before))
            .not_valid_after(_utc(not_after))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True, key_encipherment=is_rsa), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id), x509.DNSName(dns)]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        for extension in extra:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(self._key, hashes.SHA256())

    def _require_own(self, spiffe_id: str) -> None:
        try:
            parse(spiffe_id, self._trust_domain)
        except IdentityError as exc:
            raise ValueError(f"this issuer signs mesh identities of {self._trust_domain} only: {exc}") from exc

    def _check_validity(self, ca_dir: Path) -> None:
        left_s = self.ca_not_after - self._clock.wall()
        if left_s <= 0:
            raise CaError(
                f"the CA in {ca_dir} expired on {_utc(self.ca_not_after):%Y-%m-%d}; rotating a CA is not supported "
                f"yet: move {ca_dir} away to make a new one at the next start (every sidecar must then enrol again)"
            )
        if left_s < CA_EXPIRY_WARNING_S:
            log.warning(
                "the CA in %s expires on %s (in %.0f days); plan to replace it (move the directory away and "
                "re-enrol every sidecar)",
                ca_dir,
                f"{_utc(self.ca_not_after):%Y-%m-%d}",
                left_s / 86400,
            )

    @classmethod
    def _create(cls, ca_dir: Path, trust_domain: str, clock: Clock) -> Issuer:
        try:
            make_private_dir(ca_dir)
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _ca_certificate(key, trust_domain, clock.wall(), CA_VALIDITY_S)
            write_private(
                ca_dir / CA_KEY_FILE,
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ),
            )
            write_private(ca_dir / CA_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM))
        except PrivateFileError as exc:
            raise CaError(f"cannot create the embedded CA: {exc}") from exc
        issuer = cls(cert, key, clock)
        log.info(
            "created the embedded CA for trust domain %s in %s (fingerprint %s, valid until %s)",
            trust_domain,
            ca_dir,
            issuer.fingerprint,
            f"{_utc(issuer.ca_not_after):%Y-%m-%d}",
        )
        return issuer


def _ca_certificate(
    key: ec.EllipticCurvePrivateKey, trust_domain: str, now: float, validity_s: float
) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshwarden"),
            # A random suffix: two CAs of one trust domain (a re-created one, a test's foreign
            # one) never share a subject, so a chain can never be built through the wrong one.
            x509.NameAttribute(NameOID.COMMON_NAME, f"meshwarden CA {trust_domain} {secrets.token_hex(4)}"),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(_utc(now - CLOCK_SKEW_S))
        .not_valid_after(_utc(now + validity_s))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _trust_domain_of(ca_cert: x509.Certificate) -> str:
    try:
        san = ca_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CaError("the CA certificate has no spiffe://<trust-domain> URI SAN") from None
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith("spiffe://")]
    if len(uris) != 1:
        raise CaError(f"the CA certificate must carry one spiffe://<trust-domain> URI SAN, it has {len(uris)}")
    return check_trust_domain(uris[0].removeprefix("spiffe://").rstrip("/"))


def _key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _serial() -> int:
    """A random positive serial of 64 bits (RFC 5280 allows up to 20 octets; CAs use >= 64 random bits)."""
    return secrets.randbits(64) | 1


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _describe(public_key: object) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"EC {public_key.curve.name}"
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"{public_key.key_size}-bit RSA"
    return type(public_key).__name__.removeprefix("_").replace("PublicKey", "")
