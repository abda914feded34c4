"""A local mesh of real processes for the integration tests.

Every process binds port 0 and reports its addresses in its ready line; `LocalMesh.close()`
stops them all, and when a test failed the fixture prints each process's stderr.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from meshwarden import local_mesh
from meshwarden.addresses import parse_host_port
from meshwarden.identity.bootstrap import learn_registry_ca
from meshwarden.registry_client import RegistryTrust, registry_channel, registry_stub
from meshwarden.supervise import Child
from meshwarden.v1 import catalog_pb2, receipts_pb2, receipts_pb2_grpc, registry_pb2
from tests.integration.bundles import ALLOW_ALL, BundleMaker

AGENTS = Path(__file__).parent / "agents"
PROBE = AGENTS / "probe_agent.py"
ECHO_EXAMPLE = Path(__file__).parents[2] / "examples" / "echo_agent.py"


class LocalMesh(local_mesh.LocalMesh):
    """meshwarden.local_mesh's mesh, with what tests need on top: a signed allow-all bundle for
    a fresh mesh, operator calls to the registry, probe agents."""

    def __init__(
        self, workdir: Path, heartbeat_interval_s: float = 0.5, meshwarden: Sequence[str] | None = None
    ) -> None:
        """`meshwarden`: the command that runs the CLI (default: this interpreter's, from this
        checkout); the wheel test passes the script of a freshly installed environment."""
        self.bundles = BundleMaker(workdir)
        super().__init__(
            workdir,
            bundle_keys=self.bundles.trusted_keys_dir,
            heartbeat_interval_s=heartbeat_interval_s,
            command=meshwarden,
        )
        # Extra environment for every sidecar started from now on (e.g. OTEL_* variables).
        self.sidecar_env: dict[str, str] = {}
        self._bundle_revision = 0
        # The registry verifies pushed bundles against the test key, as a deployment should;
        # False starts it with --allow-unverified-bundles (to see sidecars refuse what it let through).
        self.registry_verifies_bundles = True

    async def start_registry(
        self,
        listen: str = "127.0.0.1:0",
        mtls_listen: str = "",
        *flags: str,
        allow_all: bool = True,
        verify_bundles: bool | None = None,
    ) -> Child:
        """The registry on `listen` (TLS) and `mtls_listen` (mTLS; port 0 when not given), with
        any further `flags`. To restart it where sidecars expect it, pass both addresses of the
        previous one. A fresh mesh gets a signed allow-all bundle unless `allow_all` is False."""
        registry = await super().start_registry(
            listen,
            mtls_listen,
            *flags,
            verify_bundles=self.registry_verifies_bundles if verify_bundles is None else verify_bundles,
        )
        if self._bundle_revision == 0 and allow_all:  # a fresh mesh: everything allowed, by a signed bundle
            await self.push_bundle(self.bundles.make(1, {"allow-all.cedar": ALLOW_ALL}))
        return registry

    async def push_bundle(self, raw: bytes) -> registry_pb2.PushBundleResponse:
        """`meshwarden bundle push`, as an operator."""
        async with await self._operator_channel() as channel:
            reply: registry_pb2.PushBundleResponse = await registry_stub(channel).PushBundle(
                registry_pb2.PushBundleRequest(artifact=raw), metadata=self._operator_metadata(), timeout=10
            )
        self._bundle_revision = max(self._bundle_revision, reply.revision)
        return reply

    async def bundle_status(self) -> registry_pb2.ListBundleStatusResponse:
        async with await self._operator_channel() as channel:
            reply: registry_pb2.ListBundleStatusResponse = await registry_stub(channel).ListBundleStatus(
                registry_pb2.ListBundleStatusRequest(), metadata=self._operator_metadata(), timeout=10
            )
        return reply

    async def verify_receipts(self, sidecar_instance_id: str = "") -> receipts_pb2.VerifyReceiptsResponse:
        """`meshwarden receipts verify`, as an operator."""
        async with await self._operator_channel() as channel:
            reply: receipts_pb2.VerifyReceiptsResponse = await receipts_pb2_grpc.ReceiptsStub(channel).VerifyReceipts(
                receipts_pb2.VerifyReceiptsRequest(sidecar_instance_id=sidecar_instance_id),
                metadata=self._operator_metadata(),
                timeout=30,
            )
        return reply

    async def restart_registry(self) -> Child:
        old = self.registry
        if old is None:
            raise RuntimeError("no registry started")
        if old.running:
            await old.stop()
        return await self.start_registry(old.addresses["listen"], old.addresses["mtls"])

    def operator_token(self) -> str:
        return (self.registry_data_dir / "operator.token").read_text().strip()

    async def list_instances(self, agent: str = "", capability: str = "") -> list[catalog_pb2.Instance]:
        """ListInstances as an operator: TLS port, operator token, CA pinned from the ready line."""
        async with await self._operator_channel() as channel:
            request = registry_pb2.ListInstancesRequest(agent=agent, capability=capability)
            reply = await registry_stub(channel).ListInstances(request, metadata=self._operator_metadata(), timeout=5)
        return list(reply.instances)

    async def ask_receipts(self, rpc: str, request: Any) -> Any:
        """One call to the registry's Receipts service (sessions, costs) as an operator."""
        async with await self._operator_channel() as channel:
            method = getattr(receipts_pb2_grpc.ReceiptsStub(channel), rpc)
            return await method(request, metadata=self._operator_metadata(), timeout=10)

    async def operator_channel(self) -> grpc.aio.Channel:
        """A channel to the registry's TLS port as an operator uses it (send `operator_metadata()`)."""
        return await self._operator_channel()

    def operator_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._operator_metadata()

    async def _operator_channel(self) -> grpc.aio.Channel:
        if self.registry is None:
            raise RuntimeError("no registry")
        ready = self.registry.addresses
        learned = await asyncio.to_thread(
            learn_registry_ca, parse_host_port(ready["listen"]), pin=ready["ca_fingerprint"]
        )
        return registry_channel(ready["listen"], RegistryTrust(ready["trust_domain"], learned.bundle_pem))

    def _operator_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.operator_token()}"),)

    async def sidecar(
        self,
        agent: str,
        *extra: str,
        registry: str | None = None,
        data_dir: Path | None = None,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
    ) -> Child:
        """A sidecar (meshwarden.local_mesh) whose environment has `sidecar_env` and `env` added."""
        return await self.start_sidecar(
            agent,
            *extra,
            registry=registry,
            data_dir=data_dir,
            env={**self.sidecar_env, **(env or {})},
            wait_ready=wait_ready,
        )

    async def agent(
        self, sidecar: Child, version: str = "1.0.0", *extra: str, script: Path = PROBE, python: str = sys.executable
    ) -> Child:
        return await self.start_process(
            f"agent-{sidecar.addresses['agent']}",
            [python, str(script), "--sidecar", sidecar.addresses["listen"], "--version", version, *extra],
        )

    async def pair(self, agent: str, version: str = "1.0.0", *agent_args: str) -> tuple[Child, Child]:
        """A sidecar and its probe agent, registered and routable once this returns."""
        side = await self.sidecar(agent)
        return side, await self.agent(side, version, *agent_args)

    async def close(self) -> dict[str, int]:
        return dict(await self.stop())
