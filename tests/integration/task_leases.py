"""A task holder without a sidecar, for tests that need a registry-signed fencing claim: it
enrols an agent (open enrolment on loopback), registers an instance serving the kind, and
leases tasks at the registry's Tasks service over mTLS, as a sidecar's task relay does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from google.protobuf.duration_pb2 import Duration

from meshwarden.addresses import parse_host_port
from meshwarden.identity.bootstrap import learn_registry_ca
from meshwarden.identity.csr import new_key_and_csr
from meshwarden.identity.svid import svid_from_pem
from meshwarden.registry_client import RegistryTrust, registry_channel
from meshwarden.schema_hash import schema_hash
from meshwarden.v1 import (
    catalog_pb2,
    identity_pb2,
    identity_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
)
from tests.integration.mesh import LocalMesh


class Holder:
    def __init__(self, mesh: LocalMesh, stub: tasks_pb2_grpc.TasksStub, instance_id: str, kind: str) -> None:
        self._mesh, self._stub, self.instance_id, self._kind = mesh, stub, instance_id, kind

    async def submit_and_lease(self, ttl_s: float) -> tasks_pb2.LeaseTaskResponse:
        """A new task of the holder's kind, leased by it: the answer carries the signed claim."""
        ttl = Duration()
        ttl.FromMilliseconds(int(ttl_s * 1000))
        async with await self._mesh.operator_channel() as channel:
            await tasks_pb2_grpc.TasksStub(channel).SubmitTask(
                tasks_pb2.SubmitTaskRequest(kind=self._kind, input_json="{}", lease_ttl=ttl),
                metadata=self._mesh.operator_metadata(),
                timeout=10,
            )
        leased: tasks_pb2.LeaseTaskResponse = await self._stub.LeaseTask(
            tasks_pb2.LeaseTaskRequest(instance_id=self.instance_id, kinds=[self._kind]), timeout=10
        )
        assert leased.HasField("task")
        return leased


@asynccontextmanager
async def holder(mesh: LocalMesh, agent: str, kind: str) -> AsyncIterator[Holder]:
    assert mesh.registry is not None
    ready = mesh.registry.addresses
    learned = await asyncio.to_thread(learn_registry_ca, parse_host_port(ready["listen"]), pin=ready["ca_fingerprint"])
    async with registry_channel(ready["listen"], RegistryTrust(ready["trust_domain"], learned.bundle_pem)) as ch:
        key_and_csr = new_key_and_csr()
        enrolled = await identity_pb2_grpc.IdentityStub(ch).Enroll(
            identity_pb2.EnrollRequest(agent=agent, csr_pem=key_and_csr.csr_pem.decode()), timeout=10
        )
    svid = svid_from_pem(
        enrolled.cert_chain_pem.encode(), key_and_csr.private_key_pem, enrolled.trust_bundle_pem.encode()
    )
    trust = RegistryTrust(ready["trust_domain"], learned.bundle_pem, svid)
    async with registry_channel(ready["mtls"], trust) as channel:
        capability = catalog_pb2.Capability(
            name=kind, input_schema_json='{"type":"object"}', schema_hash=schema_hash({"type": "object"}, {})
        )
        instance = catalog_pb2.Instance(
            agent=agent, version="1.0.0", peer_address="127.0.0.1:9", capabilities=[capability]
        )
        registered = await registry_pb2_grpc.RegistryStub(channel).Register(
            registry_pb2.RegisterRequest(instance=instance), timeout=10
        )
        yield Holder(mesh, tasks_pb2_grpc.TasksStub(channel), registered.instance_id, kind)
