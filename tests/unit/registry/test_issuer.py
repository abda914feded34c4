"""registry.issuer: the CA on disk, and what every SVID it signs carries."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshwarden.identity.bootstrap import fingerprint
from meshwarden.identity.csr import new_key_and_csr
from meshwarden.identity.spiffe_ids import agent_id, dns_name
from meshwarden.identity.svid import leaf_of
from meshwarden.registry.errors import CaError, InvalidInput
from meshwarden.registry.issuer import CA_CERT_FILE, CA_KEY_FILE, CA_VALIDITY_S, CLOCK_SKEW_S, Issuer
from tests.identity_helpers import FakeClock

TD = "mesh.test"
BILLING = agent_id(TD, "billing")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def issuer(tmp_path: Path, clock: FakeClock) -> Issuer:
    return Issuer.open(tmp_path / "ca", TD, clock)


def _ca_cert(issuer: Issuer) -> x509.Certificate:
    return x509.load_pem_x509_certificate(issuer.bundle_pem)


def test_the_ca_is_made_private_on_first_start_and_never_logged(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ca_dir = tmp_path / "data" / "ca"
    issuer = Issuer.open(ca_dir, TD, clock)
    issuer.issue(BILLING, 3600)
    issuer.sign_csr(new_key_and_csr().csr_pem, BILLING, 3600)
    assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((ca_dir / CA_KEY_FILE).stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in caplog.text
    assert "PRIVATE KEY" in (ca_dir / CA_KEY_FILE).read_text()
    assert issuer.fingerprint in caplog.text  # the public fingerprint is, to be pinned
    assert [p.name for p in ca_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_the_ca_certificate_is_a_spiffe_bundle_ca_for_one_year(issuer: Issuer, clock: FakeClock) -> None:
    ca = _ca_cert(issuer)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    san = ca.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{TD}"]
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.not_valid_after_utc.timestamp() == pytest.approx(clock.now + CA_VALIDITY_S, abs=1)
    assert issuer.trust_domain == TD and issuer.fingerprint == fingerprint(ca)


def test_reopening_loads_the_same_ca(tmp_path: Path, issuer: Issuer, clock: FakeClock) -> None:
    again = Issuer.open(tmp_path / "ca", TD, clock)
    assert again.fingerprint == issuer.fingerprint and again.bundle_pem == issuer.bundle_pem


def test_a_ca_of_another_trust_domain_is_refused(tmp_path: Path, issuer: Issuer, clock: FakeClock) -> None:
    with pytest.raises(CaError, match=r"is for trust domain 'mesh.test'.*--trust-domain mesh.test"):
        Issuer.open(tmp_path / "ca", "other.test", clock)


def test_a_key_others_can_read_is_refused(tmp_path: Path, issuer: Issuer, clock: FakeClock) -> None:
    (tmp_path / "ca" / CA_KEY_FILE).chmod(0o644)
    with pytest.raises(CaError, match="mode 0644.*chmod 600"):
        Issuer.open(tmp_path / "ca", TD, clock)


def test_half_a_ca_is_refused_rather_than_replaced(tmp_path: Path, issuer: Issuer, clock: FakeClock) -> None:
    (tmp_path / "ca" / CA_CERT_FILE).unlink()
    with pytest.raises(CaError, match="holds ca.key but not ca.crt"):
        Issuer.open(tmp_path / "ca", TD, clock)


def test_an_expired_ca_is_refused_with_what_to_do(tmp_path: Path, issuer: Issuer) -> None:
    later = FakeClock(issuer.ca_not_after + 1)
    with pytest.raises(CaError, match="expired.*rotating a CA is not supported yet.*move"):
        Issuer.open(tmp_path / "ca", TD, later)


def test_a_damaged_key_is_refused_without_quoting_it(tmp_path: Path, issuer: Issuer, clock: FakeClock) -> None:
    key_path = tmp_path / "ca" / CA_KEY_FILE
    key_path.write_text(key_path.read_text().replace("A", "B", 3))
    with pytest.raises(CaError) as info:
        Issuer.open(tmp_path / "ca", TD, clock)
    assert "PRIVATE KEY" not in str(info.value) and info.value.__cause__ is None


def test_signed_svids_carry_the_spiffe_id_and_its_dns_name_only(issuer: Issuer, clock: FakeClock) -> None:
    # The CSR asks for a name of its own: it is ignored.
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admin")]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(agent_id(TD, "admin"))]), False)
        .sign(key, hashes.SHA256())
    )
    issued = issuer.sign_csr(csr.public_bytes(serialization.Encoding.PEM), BILLING, 3600)
    leaf = leaf_of(issued.chain_pem)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [BILLING]
    assert san.get_values_for_type(x509.DNSName) == [dns_name(BILLING)] == ["billing.agent.mesh.test"]
    assert "admin" not in leaf.subject.rfc4514_string()
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment and not usage.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert leaf.not_valid_before_utc.timestamp() == pytest.approx(clock.now - CLOCK_SKEW_S, abs=1)
    assert leaf.not_valid_after_utc.timestamp() == pytest.approx(clock.now + 3600, abs=1) == issued.not_after
    assert leaf.public_key() == key.public_key()
    leaf.verify_directly_issued_by(_ca_cert(issuer))
    assert len(x509.load_pem_x509_certificates(issued.chain_pem)) == 1  # the bundle carries the CA


def test_serials_are_random_and_positive(issuer: Issuer) -> None:
    serials = {leaf_of(issuer.issue(BILLING, 60).cert_chain_pem).serial_number for _ in range(5)}
    assert len(serials) == 5 and all(0 < s < 2**64 for s in serials)


def test_rsa_keys_also_get_key_encipherment(issuer: Issuer) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    leaf = leaf_of(issuer.sign_csr(csr.public_bytes(serialization.Encoding.PEM), BILLING, 60).chain_pem)
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment


def test_a_csr_whose_signature_does_not_match_is_refused(issuer: Issuer) -> None:
    der = bytearray(x509.load_pem_x509_csr(new_key_and_csr().csr_pem).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(InvalidInput, match="csr_pem has a signature that does not match"):
        issuer.sign_csr(forged, BILLING, 60)


@pytest.mark.parametrize(
    ("csr_pem", "message"),
    [
        (b"hello", "csr_pem is not a PEM certificate signing request"),
        (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(ed25519.Ed25519PrivateKey.generate(), None)
            .public_bytes(serialization.Encoding.PEM),
            "Ed25519",
        ),
    ],
)
def test_unusable_csrs_are_refused_saying_why(issuer: Issuer, csr_pem: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        issuer.sign_csr(csr_pem, BILLING, 60)


def test_it_signs_only_mesh_identities_of_its_trust_domain(issuer: Issuer) -> None:
    with pytest.raises(ValueError, match="signs mesh identities of mesh.test only"):
        issuer.sign_csr(new_key_and_csr().csr_pem, agent_id("other.test", "billing"), 60)


def test_an_svid_never_outlives_its_ca(clock: FakeClock) -> None:
    short_lived = Issuer.ephemeral(TD, clock, validity_s=100)
    svid = short_lived.issue(BILLING, 3600)
    assert svid.not_after == pytest.approx(short_lived.ca_not_after, abs=1)


def test_issue_gives_a_usable_svid_whose_repr_hides_the_key(issuer: Issuer) -> None:
    svid = issuer.issue(BILLING, 60)
    assert svid.spiffe_id == BILLING and svid.trust_bundle_pem == issuer.bundle_pem
    assert "PRIVATE KEY" not in repr(svid)
    key = serialization.load_pem_private_key(svid.private_key_pem, None)
    assert key.public_key() == leaf_of(svid.cert_chain_pem).public_key()


def test_tests_can_make_foreign_and_expired_svids(issuer: Issuer, clock: FakeClock) -> None:
    foreign = Issuer.ephemeral(TD, clock)
    assert foreign.fingerprint != issuer.fingerprint and foreign.trust_domain == TD
    expired = issuer.issue_between(BILLING, clock.now - 7200, clock.now - 3600)
    assert expired.not_after < clock.now
    odd = issuer.issue_between("spiffe://mesh.test/service/x", clock.now, clock.now + 60)
    assert odd.spiffe_id == "spiffe://mesh.test/service/x"
