"""A task worker as one real process, for the chaos test: it enrols as agent `--agent` (open
enrolment on loopback), registers one instance serving `--kind`, then leases, starts and
completes tasks at the registry's Tasks service over mTLS (what a sidecar's task relay
does for its agent) and renews its instance (as a sidecar would), until it is killed. A task whose input says {"fail": true} is completed
as failed. After each completion the registry accepted it prints `done TASK TOKEN`, the
side effect whose count the test checks; a refused report prints `refused TASK TOKEN`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import grpc

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

parser = argparse.ArgumentParser()
parser.add_argument("--listen", required=True)
parser.add_argument("--mtls", required=True)
parser.add_argument("--pin", required=True)
parser.add_argument("--trust-domain", required=True)
parser.add_argument("--agent", required=True)
parser.add_argument("--kind", required=True)
options = parser.parse_args()


async def main() -> None:
    learned = await asyncio.to_thread(learn_registry_ca, parse_host_port(options.listen), pin=options.pin)
    async with registry_channel(options.listen, RegistryTrust(options.trust_domain, learned.bundle_pem)) as channel:
        key_and_csr = new_key_and_csr()
        enrolled = await identity_pb2_grpc.IdentityStub(channel).Enroll(
            identity_pb2.EnrollRequest(agent=options.agent, csr_pem=key_and_csr.csr_pem.decode()), timeout=20
        )
    svid = svid_from_pem(
        enrolled.cert_chain_pem.encode(), key_and_csr.private_key_pem, enrolled.trust_bundle_pem.encode()
    )
    trust = RegistryTrust(options.trust_domain, learned.bundle_pem, svid)
    async with registry_channel(options.mtls, trust) as channel:
        capability = catalog_pb2.Capability(
            name=options.kind, input_schema_json='{"type":"object"}', schema_hash=schema_hash({"type": "object"}, {})
        )
        instance = catalog_pb2.Instance(
            agent=options.agent, version="1.0.0", peer_address="127.0.0.1:9", capabilities=[capability]
        )
        registered = await registry_pb2_grpc.RegistryStub(channel).Register(
            registry_pb2.RegisterRequest(instance=instance), timeout=20
        )
        print("ready", registered.instance_id, flush=True)
        registry = registry_pb2_grpc.RegistryStub(channel)
        every_s = registered.heartbeat_interval.ToMilliseconds() / 1000
        renewing = asyncio.create_task(renew(registry, registered.instance_id, every_s))
        await asyncio.gather(work(tasks_pb2_grpc.TasksStub(channel), registered.instance_id), renewing)


async def renew(registry: registry_pb2_grpc.RegistryStub, instance_id: str, every_s: float) -> None:
    """Keeps the instance registered, as its sidecar would."""
    while True:
        await asyncio.sleep(every_s)
        await registry.Renew(registry_pb2.RenewRequest(instance_id=instance_id), timeout=10)


async def work(stub: tasks_pb2_grpc.TasksStub, instance_id: str) -> None:
    while True:
        leased = await stub.LeaseTask(tasks_pb2.LeaseTaskRequest(instance_id=instance_id, kinds=[options.kind]))
        if not leased.HasField("task"):
            await asyncio.sleep(0.05)
            continue
        task = leased.task
        report = tasks_pb2.TaskReport(task_id=task.id, instance_id=instance_id, fencing_token=task.fencing_token)
        fail = bool(json.loads(task.input_json).get("fail", False))
        try:
            await stub.StartTask(report, timeout=10)
            await stub.CompleteTask(
                tasks_pb2.CompleteTaskRequest(
                    task_id=task.id,
                    instance_id=instance_id,
                    fencing_token=task.fencing_token,
                    succeeded=not fail,
                    error="asked to fail" if fail else "",
                ),
                timeout=10,
            )
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.FAILED_PRECONDITION:  # lease lost (a slow start under load)
                raise
            print("refused", task.id, task.fencing_token, flush=True)
            continue
        print("done", task.id, task.fencing_token, flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
