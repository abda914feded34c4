"""registry.enrolment_extension: who enrolled an identity, written by the issuer into the SVID and
read back from the certificate alone; certificates without it say who signed them."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from meshwarden.identity.csr import new_key_and_csr
from meshwarden.identity.spiffe_ids import agent_id
from meshwarden.identity.svid import leaf_of
from meshwarden.registry import enrolment_extension
from meshwarden.registry.enrolment_extension import enrolment_of
from meshwarden.registry.issuer import Issuer
from meshwarden.registry.model import CA_KEY, JOIN_TOKEN, OPEN_ENROLMENT, SPIRE, Enrolment
from tests.identity_helpers import FakeClock

TD = "mesh.test"
BILLING = agent_id(TD, "billing")
BY_TOKEN = Enrolment(
    how=JOIN_TOKEN,
    principal="operator:sha256:0123456789abcdef",
    token_id="jt-5f1c2a9e",
    claimed_user="ann",
    enrolled_at=1_700_000_000.25,
)


@pytest.fixture
def issuer() -> Issuer:
    return Issuer.ephemeral(TD, FakeClock())


def _signed(issuer: Issuer, enrolment: Enrolment | None) -> x509.Certificate:
    issued = issuer.sign_csr(new_key_and_csr().csr_pem, BILLING, 600, enrolment=enrolment)
    return leaf_of(issued.chain_pem)


@pytest.mark.parametrize(
    "enrolment",
    [
        BY_TOKEN,
        Enrolment(how=OPEN_ENROLMENT, principal=OPEN_ENROLMENT, enrolled_at=1_700_000_000.0),
        # a long claim: the DER length takes two bytes
        Enrolment(how=JOIN_TOKEN, principal="operator:sha256:0123456789abcdef", token_id="jt-1", claimed_user="u" * 64),
    ],
)
def test_an_enrolment_written_into_an_svid_reads_back_from_the_certificate(
    issuer: Issuer, enrolment: Enrolment
) -> None:
    certificate = _signed(issuer, enrolment)
    extension = certificate.extensions.get_extension_for_oid(enrolment_extension.OID)
    assert not extension.critical  # verifiers that do not know it must ignore it
    assert enrolment_of(certificate, issuer.key_id) == enrolment


def test_without_the_extension_the_signer_says_how_the_certificate_came_to_be(issuer: Issuer) -> None:
    assert enrolment_of(_signed(issuer, None), issuer.key_id) == Enrolment(how=CA_KEY, principal=CA_KEY)
    made_with_the_ca_key = leaf_of(issuer.issue(BILLING, 600).cert_chain_pem)
    assert enrolment_of(made_with_the_ca_key, issuer.key_id).principal == CA_KEY
    other_ca = Issuer.ephemeral(TD, FakeClock())  # another CA of the trust domain, as SPIRE would be
    assert enrolment_of(_signed(other_ca, None), issuer.key_id) == Enrolment(how=SPIRE, principal=SPIRE)


def test_another_cas_certificate_does_not_speak_for_an_enrolment_here(issuer: Issuer) -> None:
    other_ca = Issuer.ephemeral(TD, FakeClock())  # trusted too (SPIRE), but not the one that enrols
    forged = Enrolment(how=JOIN_TOKEN, principal="operator:sha256:someone-else", token_id="jt-1")
    assert enrolment_of(_signed(other_ca, forged), issuer.key_id) == Enrolment(how=SPIRE, principal=SPIRE)


def test_only_an_enrolment_is_written_into_an_svid() -> None:
    with pytest.raises(ValueError, match="not 'spire'"):
        enrolment_extension.extension(Enrolment(how=SPIRE, principal="operator:sha256:forged"))


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x04\x02{}",  # an OCTET STRING, not a UTF8String
        b"\x0c\x05{}",  # a length past the end
        b"\x0c\x02[]",
        b'\x0c\x0f{"how":"spire"}',
        b"\x0c\x02\xff\xfe",
    ],
)
def test_a_damaged_extension_is_shown_as_made_with_the_ca_key(issuer: Issuer, value: bytes) -> None:
    certificate = leaf_of(issuer.issue(BILLING, 600).cert_chain_pem)
    builder = (
        x509.CertificateBuilder()
        .subject_name(certificate.subject)
        .issuer_name(certificate.issuer)
        .public_key(certificate.public_key())
        .serial_number(certificate.serial_number)
        .not_valid_before(certificate.not_valid_before_utc)
        .not_valid_after(certificate.not_valid_after_utc)
        .add_extension(x509.UnrecognizedExtension(enrolment_extension.OID, value), critical=False)
        .add_extension(certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value, False)
    )
    damaged = builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())  # read, not verified, here
    assert enrolment_of(damaged, issuer.key_id) == Enrolment(how=CA_KEY, principal=CA_KEY)
