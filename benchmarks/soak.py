"""Soak: the mesh at a fixed call rate for ten minutes, with a registry restart and a callee
killed midway; every process's memory, every call's fate and every receipt accounted for.

    PYTHONPATH=. .venv/bin/python benchmarks/soak.py [--duration-s 600] [--rate 20]
        [--sample-interval-s 30] [--output json]

The mesh is the integration tests' (tests/integration/mesh.py): a registry, the caller's
sidecar (`support`), two `billing` instances (sidecar and probe agent each), all real
processes over real sockets with mTLS. Calls are keyed (idempotency key), so a retried call
runs once. At a third of the run the registry is stopped and started again on the same
addresses; at half the run one billing instance is killed -9 (sidecar and agent).

Reported: calls made, answered, and failed by error kind (failures other than the transient
kinds a kill explains are "unexpected"); latency p50/p99; a memory series per process (RSS
every `--sample-interval-s`, printed as it is taken, one series per pid, so the restarted
registry and the two billing instances are told apart) with its least-squares slope in MiB
per hour over the samples after warm-up (a tenth of the run): two points cannot tell growth
that follows the load from a leak, a slope over the series can; and receipts: every answered call must have its
outbound receipt in the registry, and its inbound one when its callee survived (the killed
instance's unshipped receipts are gone with its data only if its spool was: it is kept, so
they count too once it is restarted at the end to ship them). `receipts verify` must say intact.
Not part of the test suite: it takes ten minutes by design.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import meshwarden
from meshwarden import errors
from tests.integration.mesh import LocalMesh

TRANSIENT = {"peer_unavailable", "no_healthy_instance", "not_sent", "circuit_open", "deadline_exceeded"}


@dataclass
class Tally:
    made: int = 0
    answered: list[str] = field(default_factory=list)  # call ids
    failures: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


async def call_at_rate(client: meshwarden.Client, rate: float, until: float, tally: Tally) -> None:
    interval, next_at = 1.0 / rate, time.monotonic()
    pending: set[asyncio.Task[None]] = set()

    async def one(n: int) -> None:
        started = time.monotonic()
        try:
            result = await client.invoke("echo", {"n": n}, idempotency_key=uuid.uuid4().hex, timeout=5)
        except errors.MeshError as exc:
            tally.failures[exc.kind] += 1
            return
        except meshwarden.SidecarUnreachable:
            tally.failures["sidecar_unreachable"] += 1
            return
        tally.latencies_s.append(time.monotonic() - started)
        tally.answered.append(result.call_id)

    while time.monotonic() < until:
        tally.made += 1
        task = asyncio.create_task(one(tally.made))
        pending.add(task)
        task.add_done_callback(pending.discard)
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await asyncio.gather(*pending)


class MemoryReport(TypedDict):
    name: str
    pid: int
    samples: list[tuple[float, float]]  # (seconds since the load started, MiB)
    slope_mib_per_h_after_warmup: float | None


@dataclass
class Series:
    """One process's RSS over the run: (seconds since the load started, MiB) every interval."""

    name: str
    pid: int
    points: list[tuple[float, float]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name} (pid {self.pid})"

    def slope_mib_per_h(self, after_s: float) -> float | None:
        """Least-squares slope of RSS against time over the samples from `after_s` on, in MiB
        per hour; None with fewer than three such samples (two points are no trend)."""
        later = [(t, mib) for t, mib in self.points if t >= after_s]
        if len(later) < 3:
            return None
        fit = statistics.linear_regression([t for t, _ in later], [mib for _, mib in later])
        return fit.slope * 3600

    def report(self, after_s: float) -> MemoryReport:
        slope = self.slope_mib_per_h(after_s)
        return {
            "name": self.name,
            "pid": self.pid,
            "samples": [(round(t, 1), round(mib, 2)) for t, mib in self.points],
            "slope_mib_per_h_after_warmup": round(slope, 2) if slope is not None else None,
        }


async def sample_memory(
    mesh: LocalMesh, series: dict[int, Series], start: float, until: float, interval_s: float
) -> None:
    """RSS of every live process every `interval_s` from the start of the load (on a fixed
    schedule, so a slow sample does not shift the next), one series per pid; each sample printed."""
    at = start
    while at <= until:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        t = time.monotonic() - start
        taken = []
        for child in list(mesh.children):
            kib = rss_kib(child.process.pid) if child.running else 0
            if kib:
                one = series.setdefault(child.process.pid, Series(child.name, child.process.pid))
                one.points.append((t, kib / 1024))
                taken.append(f"{child.name}[{child.process.pid}] {kib / 1024:.1f}")
        print(f"{t:6.0f} s: RSS MiB " + ", ".join(taken), flush=True)
        at += interval_s


def stored_receipts(mesh: LocalMesh) -> set[tuple[str, str]]:
    db = sqlite3.connect(f"file:{mesh.registry_data_dir / 'registry.db'}?mode=ro", uri=True)
    try:
        return {(call_id, direction) for call_id, direction in db.execute("SELECT call_id, direction FROM receipts")}
    finally:
        db.close()


async def soak(
    duration_s: float, rate: float, interval_s: float, workdir: Path
) -> tuple[dict[str, object], list[MemoryReport]]:
    """The run's figures, and its memory series per process."""
    mesh = LocalMesh(workdir)
    await mesh.start_registry()
    try:
        caller = await mesh.sidecar("support", "--receipt-ship-interval-s", "0.5")
        first_dir = workdir / "billing-first"
        first = await mesh.sidecar("billing", "--receipt-ship-interval-s", "0.5", data_dir=first_dir)
        first_agent = await mesh.agent(first)
        second = await mesh.sidecar("billing", "--receipt-ship-interval-s", "0.5")
        await mesh.agent(second)
        tally, series = Tally(), dict[int, Series]()
        async with meshwarden.Client(caller.addresses["listen"]) as client:
            for _ in range(100):
                try:
                    await client.invoke("echo", {}, timeout=5)
                    break
                except errors.MeshError:
                    await asyncio.sleep(0.1)
            start = time.monotonic()
            end = start + duration_s
            load = asyncio.create_task(call_at_rate(client, rate, end, tally))
            sampling = asyncio.create_task(sample_memory(mesh, series, start, end, interval_s))
            await asyncio.sleep(duration_s / 3)
            print(f"{time.monotonic() - start:6.0f} s: restarting the registry", flush=True)
            await mesh.restart_registry()
            await asyncio.sleep(max(0.0, start + duration_s / 2 - time.monotonic()))
            print(
                f"{time.monotonic() - start:6.0f} s: killing one billing instance (sidecar and agent, -9)", flush=True
            )
            first_agent.process.kill()
            first.process.kill()
            await asyncio.gather(load, sampling)
        # The killed instance's receipts are in its spool: restart it to ship them.
        await mesh.sidecar("billing", "--receipt-ship-interval-s", "0.5", data_dir=first_dir)
        answered = set(tally.answered)
        deadline = time.monotonic() + 60
        while True:
            held = stored_receipts(mesh)
            missing_out = [c for c in answered if (c, "outbound") not in held]
            if not missing_out or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        verdict = await mesh.verify_receipts()
        latencies = sorted(tally.latencies_s)
        unexpected = {k: v for k, v in tally.failures.items() if k not in TRANSIENT}
        memory = [one.report(duration_s / 10) for one in series.values()]
        return {
            "duration_s": duration_s,
            "rate_per_s": rate,
            "calls_made": tally.made,
            "answered": len(answered),
            "failures": dict(tally.failures),
            "unexpected_failures": unexpected,
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2) if latencies else None,
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2) if latencies else None,
            "sample_interval_s": interval_s,
            "warmup_s": duration_s / 10,
            "answered_without_outbound_receipt": len(missing_out),
            "receipts_intact": verdict.intact,
        }, memory
    finally:
        await mesh.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=20.0, help="calls per second")
    parser.add_argument("--sample-interval-s", type=float, default=30.0, help="RSS of every process this often")
    parser.add_argument("--output", choices=("table", "json"), default="table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meshwarden-soak-") as directory:
        report, memory = asyncio.run(soak(args.duration_s, args.rate, args.sample_interval_s, Path(directory)))
    if args.output == "json":
        print(json.dumps({**report, "memory": memory}, indent=2))
        return
    for key, value in report.items():
        print(f"{key}: {value}")
    print_memory(memory)


def print_memory(memory: list[MemoryReport]) -> None:
    """Per process: how many samples, the first and last RSS, and the slope after warm-up."""
    print(f"{'process':<32} {'samples':>7} {'first MiB':>10} {'last MiB':>9} {'slope MiB/h':>12}")
    for one in memory:
        points, slope = one["samples"], one["slope_mib_per_h_after_warmup"]
        shown = f"{slope:+.2f}" if slope is not None else "n/a"
        label = f"{one['name']} ({one['pid']})"
        print(f"{label:<32} {len(points):>7} {points[0][1]:>10.1f} {points[-1][1]:>9.1f} {shown:>12}")


if __name__ == "__main__":
    main()
