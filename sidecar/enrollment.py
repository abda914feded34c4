"""Identity from the registry's embedded issuer: learn the CA, enrol once, renew before expiry.

First start: the trust bundle comes from --trust-bundle, or is learned from the registry's
TLS handshake and checked against a pin (identity/bootstrap.py). The sidecar makes its own
key, sends only a CSR (with the join token, or none on an open loopback registry), and keeps
key and SVID in its data directory (0600) so that a restart can renew instead of enrolling
again with a new token. At half of each SVID's lifetime it renews over mTLS with the SVID it
holds; the new SVID reaches the servers and channels through the local Workload API.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshwarden.addresses import HostPort, parse_host_ports
from meshwarden.clock import Clock, iso_utc
from meshwarden.identity import join_token
from meshwarden.identity.bootstrap import BootstrapError, learn_registry_ca
from meshwarden.identity.credentials import channel_credentials, expect_peer
from meshwarden.identity.spiffe_ids import agent_id, registry_id
from meshwarden.identity.svid import Svid, svid_from_pem
from meshwarden.registry_replicas import NoReplicaReachable, Skipped, first_reachable
from meshwarden.secure_files import ensure_private_dir, write_atomically
from meshwarden.sidecar import registry_change, registry_endpoint
from meshwarden.sidecar.config import SidecarConfig
from meshwarden.v1 import identity_pb2, identity_pb2_grpc

log = logging.getLogger(__name__)

_RPC_TIMEOUT_S = 10.0
_RENEW_AT_FRACTION_LEFT = 0.5
_RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0)


class EnrollmentError(Exception):
    """This sidecar could not get an identity; the message says what to do."""


@dataclass(frozen=True)
class _Paths:
    bundle: Path
    chain: Path
    key: Path


class Enrollment:
    def __init__(self, config: SidecarConfig, clock: Clock) -> None:
        self._config, self._clock = config, clock
        self._spiffe_id = agent_id(config.trust_domain, config.agent)
        directory = ensure_private_dir(config.data_dir / "identity")
        self._paths = _Paths(directory / "trust-bundle.pem", directory / "svid.pem", directory / "svid.key")

        self.registry_mtls = ""  # learned from the registry, see sidecar/registry_endpoint.py

    @property
    def spiffe_id(self) -> str:
        return self._spiffe_id

    async def first_svid(self) -> Svid:
        """An SVID to start with: the persisted one if still good, else a new enrolment."""
        bundle = await self._trust_bundle()
        registry_change.record(self._paths.bundle.parent, self._config.registry_replicas or (self._config.registry,))
        persisted = self._persisted(bundle)
        if persisted is not None:
            log.info("using the persisted SVID %s (valid until %s)", persisted.spiffe_id, iso_utc(persisted.not_after))
            try:
                self.registry_mtls = await registry_endpoint.discover(self._config, bundle)
            except registry_endpoint.RegistryEndpointError as exc:
                raise EnrollmentError(str(exc)) from exc
            return persisted
        enrolled = await self._enroll(bundle)
        if self._several_replicas:  # each replica's mTLS address, so the link can move along them
            try:
                self.registry_mtls = await registry_endpoint.discover(self._config, bundle)
            except registry_endpoint.RegistryEndpointError as exc:
                raise EnrollmentError(str(exc)) from exc
        return enrolled

    @property
    def _several_replicas(self) -> bool:
        return len(self._config.registry_replicas) > 1 and not self._config.registry_mtls

    async def keep_fresh(self, svid: Svid, publish: Callable[[Svid], Awaitable[None]]) -> None:
        """Renews at half-life, forever; a failed renewal is retried and never drops the
        SVID still held (calls keep working until it really expires)."""
        attempt = 0
        while True:
            renew_at = svid.not_before + (svid.not_after - svid.not_before) * (1 - _RENEW_AT_FRACTION_LEFT)
            delay = max(renew_at - self._clock.wall(), 0.0) if attempt == 0 else _RETRY_S[min(attempt - 1, 4)]
            await asyncio.sleep(delay)
            try:
                svid = await self._renew(svid)
            except (grpc.aio.AioRpcError, EnrollmentError) as exc:
                attempt += 1
                left = svid.not_after - self._clock.wall()
                log.warning("SVID renewal failed (%s); %.0f s of validity left, retrying", _reason(exc), left)
                continue
            attempt = 0
            await publish(svid)
            log.info("SVID renewed: %s valid until %s", svid.spiffe_id, iso_utc(svid.not_after))

    async def _trust_bundle(self) -> bytes:
        if self._config.trust_bundle is not None:
            try:
                return self._config.trust_bundle.read_bytes()
            except OSError as exc:
                raise EnrollmentError(
                    f"cannot read --trust-bundle {self._config.trust_bundle}: {exc.strerror}"
                ) from exc
        if self._paths.bundle.exists():
            return self._paths.bundle.read_bytes()
        pin = self._config.ca_pin or (join_token.parse(self._token()).ca_pin if self._token() else "")
        try:
            learned = await asyncio.to_thread(learn_registry_ca, self._config.registry, pin=pin)
        except BootstrapError as exc:
            raise EnrollmentError(str(exc)) from exc
        write_atomically(self._paths.bundle, learned.bundle_pem, mode=0o644)
        log.info("trusting the mesh CA %s (saved in %s)", learned.fingerprint, self._paths.bundle)
        return learned.bundle_pem

    def _persisted(self, bundle: bytes) -> Svid | None:
        if not (self._paths.chain.exists() and self._paths.key.exists()):
            return None
        try:
            svid = svid_from_pem(self._paths.chain.read_bytes(), self._paths.key.read_bytes(), bundle)
        except ValueError as exc:
            log.warning("ignoring the persisted SVID: %s", exc)
            return None
        if svid.spiffe_id != self._spiffe_id:
            log.warning("ignoring the persisted SVID for %s: this sidecar is %s", svid.spiffe_id, self._spiffe_id)
            return None
        if svid.lifetime_fraction_left(self._clock.wall()) < 0.1:
            return None
        return svid

    async def _enroll(self, bundle: bytes) -> Svid:
        key, csr = _key_and_csr(self._spiffe_id)
        request = identity_pb2.EnrollRequest(agent=self._config.agent, csr_pem=csr, join_token=self._token())
        async with self._channel(bundle, None, str(self._config.registry)) as channel:
            try:
                reply = await identity_pb2_grpc.IdentityStub(channel).Enroll(request, timeout=_RPC_TIMEOUT_S)
            except grpc.aio.AioRpcError as err:
                raise EnrollmentError(
                    f"the registry at {self._config.registry} refused to enrol agent {self._config.agent}: "
                    f"{err.code().name}: {err.details()}"
                ) from err
        svid = self._accept(reply, key)
        log.info("enrolled as %s (valid until %s)", svid.spiffe_id, iso_utc(svid.not_after))
        return svid

    async def _renew(self, current: Svid) -> Svid:
        key, csr = _key_and_csr(self._spiffe_id)
        address = await self._reachable_mtls()
        async with self._channel(current.trust_bundle_pem, current, address) as channel:
            reply = await identity_pb2_grpc.IdentityStub(channel).Renew(
                identity_pb2.RenewSvidRequest(csr_pem=csr), timeout=_RPC_TIMEOUT_S
            )
        return self._accept(reply, key)

    async def _reachable_mtls(self) -> str:
        """The first replica of the registry's mTLS addresses that answers (several only when
        --registry-mtls lists several)."""
        if "," not in self.registry_mtls:
            return self.registry_mtls

        def skipped(miss: Skipped, next_address: HostPort | None) -> None:
            if next_address is not None:
                log.warning(
                    "registry replica %s unreachable (%s); renewing at %s", miss.address, miss.reason, next_address
                )

        replicas = parse_host_ports(self.registry_mtls, what="--registry-mtls")
        try:
            return str(await asyncio.to_thread(first_reachable, replicas, skipped))
        except NoReplicaReachable:
            return str(replicas[0])  # the renewal's own failure says why

    def _accept(self, reply: identity_pb2.SvidResponse, key: bytes) -> Svid:
        svid = svid_from_pem(reply.cert_chain_pem.encode(), key, reply.trust_bundle_pem.encode())
        if svid.spiffe_id != self._spiffe_id:
            raise EnrollmentError(f"the registry issued {svid.spiffe_id}, but this sidecar is {self._spiffe_id}")
        write_atomically(self._paths.key, key)
        write_atomically(self._paths.chain, svid.cert_chain_pem, mode=0o644)
        write_atomically(self._paths.bundle, svid.trust_bundle_pem, mode=0o644)
        if reply.registry_mtls_address and not self._config.registry_mtls and not self._several_replicas:
            self.registry_mtls = registry_endpoint.remember(self._config, reply.registry_mtls_address)
        elif self._config.registry_mtls:
            self.registry_mtls = self._config.registry_mtls
        return svid

    def _channel(self, bundle: bytes, svid: Svid | None, address: str) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(
            address,
            channel_credentials(svid, bundle),
            options=expect_peer(registry_id(self._config.trust_domain)),
        )

    def _token(self) -> str:
        if self._config.join_token:
            return self._config.join_token
        if self._config.join_token_file is not None:
            try:
                return self._config.join_token_file.read_text().strip()
            except OSError as exc:
                raise EnrollmentError(f"cannot read --join-token-file: {exc.strerror}") from exc
        return ""


def _key_and_csr(spiffe_id: str) -> tuple[bytes, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spiffe_id.rsplit("/", 1)[-1])]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def _reason(exc: Exception) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)
