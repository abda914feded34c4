"""A real `meshwarden registry serve` process, and the clients tests need to talk to it as a
sidecar (an enrolled agent over mTLS), as an operator (the token) or as a stranger.

The registry binds port 0 for both of its ports and prints them, its trust domain and its CA
fingerprint in its ready line; the fixture learns the CA from the TLS port, pinned to that
fingerprint, exactly as a sidecar given `--ca-pin` would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import grpc

from meshwarden.addresses import parse_host_port
from meshwarden.clock import Clock
from meshwarden.identity.bootstrap import learn_registry_ca
from meshwarden.identity.svid import Svid
from meshwarden.local_mesh import registry_argv
from meshwarden.registry.issuer import CA_DIR_NAME, Issuer
from meshwarden.registry.operators import OPERATOR_TOKEN_FILE
from meshwarden.registry_client import RegistryTrust, registry_channel, registry_stub
from meshwarden.supervise import Child, registry_health_tls, start
from meshwarden.v1 import registry_pb2_grpc
from tests.identity_helpers import enrol


@dataclass
class RegistryProcess:
    child: Child
    data_dir: Path
    bundle_pem: bytes
    _channels: list[grpc.aio.Channel] = field(default_factory=list)
    _svids: dict[str, Svid] = field(default_factory=dict)

    @property
    def listen(self) -> str:
        """TLS without client certificates: enrolment, operators, health."""
        return self.child.addresses["listen"]

    @property
    def mtls(self) -> str:
        return self.child.addresses["mtls"]

    @property
    def trust_domain(self) -> str:
        return self.child.addresses["trust_domain"]

    @property
    def ca_fingerprint(self) -> str:
        return self.child.addresses["ca_fingerprint"]

    def trust(self, svid: Svid | None = None) -> RegistryTrust:
        return RegistryTrust(self.trust_domain, self.bundle_pem, svid)

    def operator_metadata(self) -> tuple[tuple[str, str], ...]:
        token = (self.data_dir / OPERATOR_TOKEN_FILE).read_text().strip()
        return (("authorization", f"Bearer {token}"),)

    def issuer(self, clock: Clock) -> Issuer:
        """The registry's own CA, read from its data dir: for SVIDs no enrolment would give."""
        return Issuer.load(self.data_dir / CA_DIR_NAME, clock)

    async def svid(self, agent: str) -> Svid:
        """An SVID for `agent` by open enrolment, made once per agent."""
        if agent not in self._svids:
            self._svids[agent] = await enrol(self.listen, self.trust(), agent)
        return self._svids[agent]

    async def stub(self, agent: str) -> registry_pb2_grpc.RegistryStub:
        """A Registry stub on the mTLS port, presenting `agent`'s SVID (closed with the fixture)."""
        return registry_stub(self.channel(await self.svid(agent)))

    def channel(self, svid: Svid | None, *, mtls: bool = True) -> grpc.aio.Channel:
        channel = registry_channel(self.mtls if mtls else self.listen, self.trust(svid))
        self._channels.append(channel)
        return channel

    async def restart(self, workdir: Path, *extra: str, heartbeat_interval_s: float = 0.5) -> RegistryProcess:
        """A new registry process on the same data dir (same CA); SVIDs made so far are kept."""
        await self.close_channels()
        await self.child.stop()
        again = await start_registry(
            workdir,
            *extra,
            heartbeat_interval_s=heartbeat_interval_s,
            data_dir=self.data_dir,
            name=f"{self.child.name}-again",
        )
        again._svids.update(self._svids)
        return again

    async def close_channels(self) -> None:
        for channel in self._channels:
            await channel.close()
        self._channels.clear()


async def start_registry(
    workdir: Path,
    *extra: str,
    heartbeat_interval_s: float = 0.5,
    listen: str = "127.0.0.1:0",
    data_dir: Path | None = None,
    name: str = "registry",
) -> RegistryProcess:
    directory = data_dir or workdir / "registry"
    if "--bundle-keys" not in extra:  # these tests push no bundle a sidecar would enforce
        extra = (*extra, "--allow-unverified-bundles", "true")
    child = await start(
        name,
        registry_argv(directory, *extra, listen=listen, heartbeat_interval_s=heartbeat_interval_s),
        log_dir=workdir / "logs",
        health_tls=registry_health_tls,
    )
    learned = learn_registry_ca(parse_host_port(child.addresses["listen"]), pin=child.addresses["ca_fingerprint"])
    return RegistryProcess(child, directory, learned.bundle_pem)
