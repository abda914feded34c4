"""Tasks per second through one registry, lease latency, and what checking a fencing claim costs.

    PYTHONPATH=. .venv/bin/python benchmarks/task_throughput.py [--tasks 2000] [--workers 16]
        [--batch 16] [--store postgresql://...] [--output table|json]

Starts a real registry process, enrols one agent and registers one instance serving the task
kind, then over real gRPC (TLS for the operator, mTLS with the agent's SVID), twice on the same
registry, `--tasks` tasks each time:
  one call per step (the `single_` figures):
    submit  SubmitTask calls, `--workers` at a time (operator token)
    work    `--workers` loops of LeaseTask, StartTask, CompleteTask until the queue is empty
  batched (the `batch_` figures), `--batch` tasks per call:
    submit  SubmitTasks calls, `--workers` at a time
    work    `--workers` loops of LeaseTask(max_tasks=--batch, start=true) and CompleteTasks
and reports tasks per second for each phase and for the whole cycle (submit, lease, start,
complete: four registry writes per task either way), and the p50/p99 latency of LeaseTask.
The registry's writes run on its SQLite writer thread, batched: what queued while a
transaction ran commits in the next one (registry.store.sqlite.database.write_batched), so a
batched call's tasks commit together.

Store alone (in this process, no gRPC): the same submit and lease/start/complete cycle straight
on registry.task_queue over the SQLite store, `--workers` coroutines at a time: what the
storage can do, so the gap to the figures above is the RPC layer's (TLS, gRPC, both processes
sharing the machine).

Fencing per call (in this process, no network): verifying a registry-signed claim (Ed25519)
and remembering the newest token per task, what a sidecar stage would add to each call.
Other load on the machine inflates every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshwarden import task_fence
from meshwarden.addresses import parse_host_port
from meshwarden.clock import SystemClock
from meshwarden.identity.bootstrap import learn_registry_ca
from meshwarden.identity.csr import new_key_and_csr
from meshwarden.identity.svid import svid_from_pem
from meshwarden.registry.store.sqlite import open_sqlite
from meshwarden.registry.task_queue import Holder, Submission, TaskQueue
from meshwarden.registry_client import RegistryTrust, registry_channel
from meshwarden.supervise import Child, meshwarden_argv, registry_health_tls, start
from meshwarden.v1 import (
    catalog_pb2,
    identity_pb2,
    identity_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
)

KIND = "bench.work"
AGENT = "bench-worker"


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def start_registry(work: Path, store: str = "") -> Child:
    argv = meshwarden_argv(
        "registry", "serve", "--listen", "127.0.0.1:0", "--admin-listen", "off",
        "--data-dir", str(work / "registry"), "--heartbeat-interval-s", "30",
        *(("--store", store) if store else ()),
    )  # fmt: skip
    if store:
        await asyncio.to_thread(
            subprocess.run, meshwarden_argv("registry", "migrate", "--store", store), check=True, capture_output=True
        )
    unverified = {"MESHWARDEN_REGISTRY_ALLOW_UNVERIFIED_BUNDLES": "true"}  # older checkouts ignore it
    return await start("registry", argv, log_dir=work / "logs", env=unverified, health_tls=registry_health_tls)


async def measure(registry: Child, work: Path, tasks: int, workers: int, batch: int) -> dict[str, float]:
    ready = registry.addresses
    learned = await asyncio.to_thread(learn_registry_ca, parse_host_port(ready["listen"]), pin=ready["ca_fingerprint"])
    trust = RegistryTrust(ready["trust_domain"], learned.bundle_pem)
    token = (work / "registry" / "operator.token").read_text().strip()
    metadata = (("authorization", f"Bearer {token}"),)
    async with registry_channel(ready["listen"], trust) as operator_channel:
        key_and_csr = new_key_and_csr()
        enrolled = await identity_pb2_grpc.IdentityStub(operator_channel).Enroll(
            identity_pb2.EnrollRequest(agent=AGENT, csr_pem=key_and_csr.csr_pem.decode()), timeout=10
        )
        svid = svid_from_pem(
            enrolled.cert_chain_pem.encode(), key_and_csr.private_key_pem, enrolled.trust_bundle_pem.encode()
        )
        operator = tasks_pb2_grpc.TasksStub(operator_channel)
        async with registry_channel(
            ready["mtls"], RegistryTrust(ready["trust_domain"], learned.bundle_pem, svid)
        ) as ch:
            instance = catalog_pb2.Instance(
                agent=AGENT,
                version="1.0.0",
                peer_address="127.0.0.1:7411",
                capabilities=[
                    catalog_pb2.Capability(
                        name=KIND, input_schema_json='{"type":"object"}', schema_hash="sha256:" + "f" * 64
                    )
                ],
            )
            registered = await registry_pb2_grpc.RegistryStub(ch).Register(
                registry_pb2.RegisterRequest(instance=instance), timeout=10
            )
            agent = tasks_pb2_grpc.TasksStub(ch)
            submit_s = await _submit_all(operator, metadata, tasks, workers)
            work_s, lease_ms = await _work_all(agent, registered.instance_id, workers)
            batch_submit_s = await _submit_batches(operator, metadata, tasks, workers, batch)
            batch_work_s, batch_lease_ms = await _work_batches(agent, registered.instance_id, workers, batch)
    return {
        "tasks": tasks,
        "workers": workers,
        "batch": batch,
        **_figures("single_", tasks, submit_s, work_s, lease_ms),
        **_figures("batch_", tasks, batch_submit_s, batch_work_s, batch_lease_ms),
    }


def _figures(prefix: str, tasks: int, submit_s: float, work_s: float, lease_ms: list[float]) -> dict[str, float]:
    return {
        f"{prefix}submit_per_s": round(tasks / submit_s),
        f"{prefix}lease_start_complete_per_s": round(tasks / work_s),
        f"{prefix}full_cycle_per_s": round(tasks / (submit_s + work_s)),
        f"{prefix}lease_p50_ms": round(statistics.median(lease_ms), 2),
        f"{prefix}lease_p99_ms": round(percentile(lease_ms, 0.99), 2),
    }


async def _submit_all(stub: tasks_pb2_grpc.TasksStub, metadata: tuple[tuple[str, str], ...], n: int, c: int) -> float:
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            request = tasks_pb2.SubmitTaskRequest(kind=KIND, input_json=json.dumps({"n": i}), idempotency_key=f"b{i}")
            await stub.SubmitTask(request, metadata=metadata, timeout=30)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(c)))
    return time.perf_counter() - started


async def _work_all(stub: tasks_pb2_grpc.TasksStub, instance_id: str, c: int) -> tuple[float, list[float]]:
    lease_ms: list[float] = []

    async def worker() -> None:
        while True:
            began = time.perf_counter()
            leased = await stub.LeaseTask(tasks_pb2.LeaseTaskRequest(instance_id=instance_id, kinds=[KIND]), timeout=30)
            lease_ms.append((time.perf_counter() - began) * 1000)
            if not leased.HasField("task"):
                return
            report = tasks_pb2.TaskReport(
                task_id=leased.task.id, instance_id=instance_id, fencing_token=leased.task.fencing_token
            )
            await stub.StartTask(report, timeout=30)
            await stub.CompleteTask(
                tasks_pb2.CompleteTaskRequest(
                    task_id=report.task_id, instance_id=instance_id, fencing_token=report.fencing_token, succeeded=True
                ),
                timeout=30,
            )

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(c)))
    return time.perf_counter() - started, lease_ms


async def _submit_batches(
    stub: tasks_pb2_grpc.TasksStub, metadata: tuple[tuple[str, str], ...], n: int, c: int, batch: int
) -> float:
    starts = iter(range(0, n, batch))

    async def worker() -> None:
        for first in starts:
            request = tasks_pb2.SubmitTasksRequest(
                tasks=[
                    tasks_pb2.SubmitTaskRequest(kind=KIND, input_json=json.dumps({"n": i}), idempotency_key=f"m{i}")
                    for i in range(first, min(first + batch, n))
                ]
            )
            await stub.SubmitTasks(request, metadata=metadata, timeout=30)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(c)))
    return time.perf_counter() - started


async def _work_batches(
    stub: tasks_pb2_grpc.TasksStub, instance_id: str, c: int, batch: int
) -> tuple[float, list[float]]:
    lease_ms: list[float] = []
    request = tasks_pb2.LeaseTaskRequest(instance_id=instance_id, kinds=[KIND], max_tasks=batch, start=True)

    async def worker() -> None:
        while True:
            began = time.perf_counter()
            leased = await stub.LeaseTask(request, timeout=30)
            lease_ms.append((time.perf_counter() - began) * 1000)
            if not leased.HasField("task"):
                return
            held = [leased.task, *(lease.task for lease in leased.more)]
            done = await stub.CompleteTasks(
                tasks_pb2.CompleteTasksRequest(
                    completions=[
                        tasks_pb2.CompleteTaskRequest(
                            task_id=t.id, instance_id=instance_id, fencing_token=t.fencing_token, succeeded=True
                        )
                        for t in held
                    ]
                ),
                timeout=30,
            )
            refused = [r.refused.message for r in done.results if r.HasField("refused")]
            if refused:
                raise RuntimeError(f"completions refused: {refused[:3]}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(c)))
    return time.perf_counter() - started, lease_ms


def fencing_cost_us(rounds: int = 5000) -> dict[str, float]:
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    fence = task_fence.Fence(
        task_id="task-0123456789abcdef", token=7, holder_instance_id="w-1", holder_agent="w", lease_expires_at=2e9
    )
    signed = task_fence.sign(key, fence)
    memory = task_fence.FenceMemory()
    began = time.perf_counter()
    for _ in range(rounds):
        memory.admit(task_fence.verify(public, signed, now=1e9))
    verify_us = (time.perf_counter() - began) / rounds * 1e6
    began = time.perf_counter()
    for _ in range(rounds):
        task_fence.sign(key, fence)
    sign_us = (time.perf_counter() - began) / rounds * 1e6
    return {"verify_and_admit_us": round(verify_us, 1), "sign_us": round(sign_us, 1)}


async def store_alone(tasks: int, workers: int) -> dict[str, float]:
    """Submit, then lease/start/complete, on TaskQueue over the SQLite store in this process."""
    holder = Holder(instance_id="bench-1", agent=AGENT)
    with tempfile.TemporaryDirectory(prefix="mw-tasks-store-") as tmp:
        stores = await open_sqlite(Path(tmp), event_log_retention=10)
        queue = TaskQueue(stores.tasks, SystemClock())
        numbers = iter(range(tasks))

        async def submitter() -> None:
            for i in numbers:
                submission = Submission(
                    kind=KIND, workflow_id="", input_json=json.dumps({"n": i}), idempotency_key=f"b{i}"
                )
                await queue.submit(submission, "bench")

        async def worker() -> None:
            while (task := await queue.lease(holder, (KIND,))) is not None:
                await queue.start(task.id, holder, task.fencing_token)
                await queue.complete(task.id, holder, task.fencing_token, succeeded=True, result_json="", error="")

        try:
            began = time.perf_counter()
            await asyncio.gather(*(submitter() for _ in range(workers)))
            submit_s = time.perf_counter() - began
            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(workers)))
            work_s = time.perf_counter() - began
        finally:
            await stores.close()
    return {
        "store_submit_per_s": round(tasks / submit_s),
        "store_lease_start_complete_per_s": round(tasks / work_s),
        "store_full_cycle_per_s": round(tasks / (submit_s + work_s)),
    }


async def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="mw-tasks-bench-") as tmp:
        work = Path(tmp)
        registry = await start_registry(work, args.store)
        try:
            figures = await measure(registry, work, args.tasks, args.workers, args.batch)
        finally:
            await registry.stop()
    if args.store:  # the store-alone figures are SQLite's
        return {**figures, **fencing_cost_us()}
    return {**figures, **await store_alone(args.tasks, args.workers), **fencing_cost_us()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16, help="tasks per batched call (at most 64)")
    parser.add_argument(
        "--store", default="", help="a postgresql:// URL for the registry (migrated here; an empty database)"
    )
    parser.add_argument("--output", choices=["table", "json"], default="table")
    args = parser.parse_args(argv)
    summary = asyncio.run(run(args))
    if args.output == "json":
        print(json.dumps(summary, indent=2))
        return 0
    for name, value in summary.items():
        print(f"{name:<34} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
