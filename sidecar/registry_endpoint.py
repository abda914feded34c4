"""Where this sidecar reaches the registry's mTLS port.

The registry serves SVID holders on a port of its own (gRPC Python servers cannot ask for a
client certificate without requiring one), and says where in GetTrustBundle and in every
Enroll/Renew answer. --registry-mtls overrides it. The last known address is kept in the
data directory, so a sidecar that restarts while the registry is down still knows it. With
several replicas in --registry, each one's address is learned, the one in use first.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import grpc

from meshwarden.addresses import AddressError, HostPort
from meshwarden.identity.credentials import channel_credentials, expect_peer
from meshwarden.identity.spiffe_ids import registry_id
from meshwarden.registry_client import mtls_address
from meshwarden.secure_files import ensure_private_dir, write_atomically
from meshwarden.sidecar.config import SidecarConfig
from meshwarden.v1 import identity_pb2, identity_pb2_grpc

log = logging.getLogger(__name__)


class RegistryEndpointError(Exception):
    pass


def cache_file(config: SidecarConfig) -> Path:
    return ensure_private_dir(config.data_dir / "identity") / "registry-mtls-address"


def remember(config: SidecarConfig, advertised: str) -> str:
    """Turns what the registry advertised into an address to dial, and keeps it."""
    address = _dialable(config.registry, advertised)
    write_atomically(cache_file(config), address.encode(), mode=0o644)
    return address


def _dialable(replica: HostPort, advertised: str) -> str:
    try:
        return mtls_address(str(replica), advertised)
    except AddressError as exc:
        raise RegistryEndpointError(f"the registry advertised an unusable mTLS address: {exc}") from exc


async def discover(config: SidecarConfig, bundle_pem: bytes) -> str:
    """The registry's mTLS address(es): --registry-mtls, else what the replica in use advertises
    followed by what each other replica of --registry advertises (the registry link moves
    along them when one fails), else the last known ones."""
    if config.registry_mtls:
        return config.registry_mtls
    learned = [await _advertised(config, config.registry, bundle_pem)]
    for replica in config.registry_replicas:
        if replica != config.registry:
            with contextlib.suppress(RegistryEndpointError):
                learned.append(await _advertised(config, replica, bundle_pem))
    addresses = ",".join(dict.fromkeys(address for address in learned if address))
    write_atomically(cache_file(config), addresses.encode(), mode=0o644)
    return addresses


async def _advertised(config: SidecarConfig, replica: HostPort, bundle_pem: bytes) -> str:
    channel = grpc.aio.secure_channel(
        str(replica),
        channel_credentials(None, bundle_pem),
        options=expect_peer(registry_id(config.trust_domain)),
    )
    try:
        reply = await identity_pb2_grpc.IdentityStub(channel).GetTrustBundle(
            identity_pb2.GetTrustBundleRequest(), timeout=5.0
        )
        return _dialable(replica, reply.registry_mtls_address)
    except grpc.aio.AioRpcError as err:
        cached = cache_file(config)
        if replica == config.registry and cached.exists():
            log.warning("registry unreachable (%s); using its last known mTLS address", err.code().name)
            return cached.read_text().strip()
        raise RegistryEndpointError(
            f"cannot reach the registry at {replica} to learn its mTLS address: {err.details()}"
        ) from err
    finally:
        await channel.close()
