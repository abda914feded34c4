"""meshwarden.registry_client.mtls_address: where the registry's mTLS port is."""

from __future__ import annotations

import pytest

from meshwarden.addresses import AddressError
from meshwarden.registry_client import mtls_address


def test_an_advertised_host_wins() -> None:
    assert mtls_address("127.0.0.1:7400", "10.0.0.5:7401") == "10.0.0.5:7401"


def test_no_advertised_host_means_the_host_dialled() -> None:
    assert mtls_address("registry.internal:7400", ":7401") == "registry.internal:7401"
    assert mtls_address("[::1]:7400", ":7401") == "[::1]:7401"


def test_nonsense_is_an_address_error() -> None:
    with pytest.raises(AddressError):
        mtls_address("127.0.0.1:7400", ":x")
    with pytest.raises(AddressError):
        mtls_address("127.0.0.1:7400", "nowhere")
