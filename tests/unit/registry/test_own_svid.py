"""registry.own_svid: the registry's SVID, its chain (for bootstrap) and rotation at half-life."""

from __future__ import annotations

import asyncio

import pytest
from cryptography import x509

from meshwarden.identity.svid import leaf_of
from meshwarden.registry.issuer import CLOCK_SKEW_S, Issuer
from meshwarden.registry.own_svid import EmbeddedRegistrySvid
from tests.identity_helpers import FakeClock


def test_the_chain_ends_with_the_ca_and_names_the_registry() -> None:
    clock = FakeClock()
    issuer = Issuer.ephemeral("mesh.test", clock)
    svid = EmbeddedRegistrySvid(issuer, 600, clock).current()
    assert svid.spiffe_id == "spiffe://mesh.test/meshwarden/registry"
    chain = x509.load_pem_x509_certificates(svid.cert_chain_pem)
    assert len(chain) == 2 and chain[-1] == x509.load_pem_x509_certificate(issuer.bundle_pem)


def test_rotation_is_due_at_half_the_lifetime() -> None:
    clock = FakeClock()
    own = EmbeddedRegistrySvid(Issuer.ephemeral("mesh.test", clock), 600, clock)
    assert own.seconds_until_rotation() == pytest.approx(300 - CLOCK_SKEW_S / 2, abs=1)
    first = own.current()
    clock.now += 400
    assert own.seconds_until_rotation() == 0
    rotated = own.rotate()
    assert own.current() is rotated and rotated.not_after > first.not_after
    assert leaf_of(rotated.cert_chain_pem).serial_number != leaf_of(first.cert_chain_pem).serial_number


async def test_rotate_forever_replaces_the_svid_when_due() -> None:
    clock = FakeClock()
    own = EmbeddedRegistrySvid(Issuer.ephemeral("mesh.test", clock), 600, clock)
    first = own.current()
    clock.now += 1000  # due now
    task = asyncio.create_task(own.rotate_forever())
    for _ in range(50):
        await asyncio.sleep(0)
        if own.current() is not first:
            break
    task.cancel()
    assert own.current() is not first
