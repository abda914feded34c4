"""The lease loop against a registry served in-process over real mTLS: RegisterAgent's wait for
the registry's confirmation cannot miss a confirmation that came before it began waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meshwarden.addresses import HostPort
from meshwarden.registry import app
from meshwarden.registry.config import RegistryConfig
from meshwarden.registry_client import RegistryTrust, registry_channel, registry_stub
from meshwarden.sidecar.lease import Lease
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.v1 import catalog_pb2, registry_pb2_grpc
from tests.identity_helpers import FakeClock, enrol

HASH = "sha256:" + "c" * 64
CAPABILITIES = [catalog_pb2.Capability(name="billing.run", schema_hash=HASH)]


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[registry_pb2_grpc.RegistryStub]:
    stop, ready = asyncio.Event(), asyncio.Future[app.Ready]()
    config = RegistryConfig(listen=HostPort("127.0.0.1", 0), data_dir=tmp_path, allow_unverified_bundles=True)
    task = asyncio.create_task(app.serve(config, FakeClock(time.time()), stop=stop, on_ready=ready.set_result))
    bound = await asyncio.wait_for(ready, 20)
    svid = await enrol(str(bound.listen), RegistryTrust(bound.trust_domain, bound.bundle_pem), "billing")
    async with registry_channel(str(bound.mtls), RegistryTrust(bound.trust_domain, bound.bundle_pem, svid)) as channel:
        yield registry_stub(channel)
    stop.set()
    await asyncio.wait_for(task, 20)


async def test_a_confirmation_that_came_first_is_not_lost(registry: registry_pb2_grpc.RegistryStub) -> None:
    local = LocalAgent("billing", "billing-1", "127.0.0.1:7411", spiffe_id="spiffe://meshwarden.local/agent/billing")
    lease = Lease(lambda: registry, local)
    loop = asyncio.create_task(lease.run())
    try:
        first = local.register("1.0.0", CAPABILITIES)
        await asyncio.wait_for(lease.registered.wait(), 20)  # the lease loop confirmed it already
        assert await lease.confirmed(first.generation, timeout_s=20)  # ...and the waiter still sees it
        second = local.register("1.1.0", CAPABILITIES)
        assert second.generation == first.generation + 1
        assert await lease.confirmed(second.generation, timeout_s=20)
        assert lease.confirmed_generation == second.generation
        # A registration the registry never got is not confirmed by an earlier one.
        assert not await lease.confirmed(second.generation + 1, timeout_s=0.2)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
