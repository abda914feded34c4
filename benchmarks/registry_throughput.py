"""Registry write and read throughput over real gRPC (mTLS), and how long its event loop stalls.

A registry runs in a child process (`registry.app.serve`, the code under test, with a task
that measures how late the loop wakes it every 2 ms); this process enrols as an agent and
drives it:
  register   Register calls, `--concurrency` at a time (each a catalog change: a revision)
  health     grpc.health.v1 Check calls on the mTLS port, as many at a time: what a call costs
             the registry before any of its code runs (gRPC, TLS, HTTP/2)
  renew      Renew calls of those instances, as many at a time
  ship       ShipReceipts batches of 1,000 receipts of one chain (each re-hashed, fsync'd)
  list       ListInstances of the whole catalog
Per phase: operations per second, the registry's CPU per operation (from /proc/<pid>/schedstat,
all replicas together: the rate one registry core allows, whatever else loads the machine),
and the registry loop's longest stall and how many stalls went over 10 ms.

With --watchers N, a child process (benchmarks/watch_fanout.py) holds N Watch streams while
the instances are registered, and reports how far behind the registrations they were: per
stream and sampled registration, the time from Register's answer to the first message that
brought the stream to that revision; and when the last stream was current after the last
registration. The same script measures any version of the registry (it uses only the
gRPC API and `app.serve`): run it with PYTHONPATH pointing at an older checkout for "before".

    .venv/bin/python -m benchmarks.registry_throughput --instances 2000 --batches 10
    .venv/bin/python -m benchmarks.registry_throughput --store postgresql://USER@HOST:PORT/DB   # migrated, empty
    .venv/bin/python -m benchmarks.registry_throughput --store postgresql://... --replicas 3

With --replicas N (PostgreSQL only), N registry processes serve the one store and the calls of
each phase go round-robin to them (the loop figures are the worst replica's); receipts and
listings go to the first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from grpc_health.v1 import health_pb2, health_pb2_grpc

from meshwarden.identity.csr import new_key_and_csr
from meshwarden.identity.svid import svid_from_pem
from meshwarden.receipt_hash import receipt_hash
from meshwarden.receipt_signing import sign_head
from meshwarden.registry_client import RegistryTrust, registry_channel, registry_stub
from meshwarden.schema_hash import schema_hash
from meshwarden.v1 import catalog_pb2, identity_pb2, identity_pb2_grpc, receipts_pb2, receipts_pb2_grpc, registry_pb2

TICK_S = 0.002
MAX_MARKS = 500  # registrations whose watch lag is measured, evenly spread
STALL_S = 0.010


class LoopLag:
    """How late a task that asks for a turn every TICK_S gets it: the loop's stalls."""

    def __init__(self) -> None:
        self.stalls: list[float] = []

    async def run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            self.stalls.append(now - last - TICK_S)
            last = now

    def report(self) -> dict[str, float]:
        stalls, self.stalls = self.stalls, []
        return {
            "max_ms": 1000 * max(stalls, default=0.0),
            "p99_ms": 1000 * (statistics.quantiles(stalls, n=100)[98] if len(stalls) > 100 else 0.0),
            "over_10ms": float(sum(1 for s in stalls if s > STALL_S)),
        }


async def serve_child(data_dir: Path, store: str, coalesce_s: float | None, log_to: Path | None) -> None:
    """The registry under test, printing its ports, then a lag report on each SIGUSR1; with
    `log_to`, logging at INFO into that file as `meshwarden registry serve` logs to stderr."""
    if log_to is not None:
        from meshwarden import logs

        sys.stderr = log_to.open("a")  # noqa: SIM115 -- the child's stderr until it exits
        logs.configure("info")
    from meshwarden.addresses import HostPort
    from meshwarden.clock import SystemClock
    from meshwarden.registry import app
    from meshwarden.registry.config import RegistryConfig

    interval = getattr(app, "GIL_SWITCH_INTERVAL_S", None)  # what `meshwarden registry serve` sets, if anything
    if interval is not None:
        sys.setswitchinterval(interval)
    lag, stop, loop = LoopLag(), asyncio.Event(), asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(json.dumps(lag.report()), flush=True))
    watcher = asyncio.create_task(lag.run())

    def ready(bound: Any) -> None:
        print(
            json.dumps(
                {
                    "listen": str(bound.listen),
                    "mtls": str(bound.mtls),
                    "bundle": bound.bundle_pem.decode(),
                    "td": bound.trust_domain,
                }
            ),
            flush=True,
        )
        lag.report()  # start-up does not count

    # Newer registries refuse to start without bundle keys unless told; older ones lack the field,
    # and an older checkout knows no store option.
    known = {f.name for f in dataclasses.fields(RegistryConfig)}
    extra: dict[str, Any] = {"allow_unverified_bundles": True} if "allow_unverified_bundles" in known else {}
    if store:
        extra["store"] = store
    if coalesce_s is not None and "watch_coalesce_s" in known:
        extra["watch_coalesce_s"] = coalesce_s
    config = RegistryConfig(listen=HostPort("127.0.0.1", 0), data_dir=data_dir, heartbeat_interval_s=30.0, **extra)
    await app.serve(config, SystemClock(), stop=stop, on_ready=ready)
    watcher.cancel()


class Child:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), 60)
        if not raw:
            raise RuntimeError("the registry under test exited")
        return dict(json.loads(raw))

    async def lag(self) -> dict[str, float]:
        self.process.send_signal(signal.SIGUSR1)
        return {k: float(v) for k, v in (await self.line()).items()}


async def timed(count: int, concurrency: int, one: Callable[[int], Awaitable[object]]) -> float:
    """Runs `one(0..count-1)`, `concurrency` at a time; returns operations per second."""
    queue = iter(range(count))

    async def worker() -> None:
        for n in queue:
            await one(n)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


def receipts(spiffe_id: str, start: int, count: int, prev: str) -> list[receipts_pb2.Receipt]:
    batch = []
    for seq in range(start, start + count):
        receipt = receipts_pb2.Receipt(
            sidecar_instance_id="bench-1",
            sidecar_spiffe_id=spiffe_id,
            seq=seq,
            prev_hash=prev,
            direction="outbound",
            call_id=f"c{seq}",
            session_id=f"s{seq // 10}",
            caller_agent="bench",
            caller_spiffe_id=spiffe_id,  # the registry takes only receipts of the shipper's own calls
            callee_agent="billing",
            capability="billing.refund",
            status="OK",
            usage=receipts_pb2.Usage(model="m", input_tokens=500, output_tokens=80, cost_micro_usd=120),
        )
        receipt.started_at.FromNanoseconds(time.time_ns())
        receipt.hash = receipt_hash(receipt)
        prev = receipt.hash
        batch.append(receipt)
    return batch


def cpu_ns(pid: int) -> int:
    """Nanoseconds process `pid` has run on a CPU (all its threads), from /proc/<pid>/schedstat."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def machine_busy_ns() -> int:
    """Nanoseconds every CPU of the machine was busy (not idle nor iowait), from /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    ticks = sum(fields) - fields[3] - fields[4]
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy recording `pid` (collapsed stacks, as `--format raw`) until sent SIGINT; only the
    thread holding the interpreter is sampled (--gil): where the registry's Python time goes."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--rate",
        "200",
        "--gil",
        *(["--native"] if os.environ.get("PY_SPY_NATIVE") else []),
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def drive(options: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        processes = []
        for _ in range(options.replicas):  # several only on one PostgreSQL store
            data_dir = stack.enter_context(tempfile.TemporaryDirectory())
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "benchmarks.registry_throughput",
                    "--serve",
                    data_dir,
                    *(["--store", options.store] if options.store else []),
                    *(
                        [f"--watch-coalesce-s={options.watch_coalesce_s}"]
                        if options.watch_coalesce_s is not None
                        else []
                    ),
                    *([f"--registry-log={options.registry_log}"] if options.registry_log else []),
                    stdout=asyncio.subprocess.PIPE,
                    env=env,
                )
            )
            if len(processes) == 1:
                await asyncio.sleep(2.0)  # the first replica stores the CA the others then use
        children = [Child(p) for p in processes]
        watchers: asyncio.subprocess.Process | None = None
        try:
            readies = [await child.line() for child in children]
            if options.watchers:
                spec = {
                    "listen": readies[0]["listen"],
                    "mtls": [r["mtls"] for r in readies],
                    "bundle": readies[0]["bundle"],
                    "td": readies[0]["td"],
                    "count": options.watchers,
                }
                watchers = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "benchmarks.watch_fanout",
                    json.dumps(spec),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    env=env,
                )
            await run_phases(children, readies, Child(watchers) if watchers else None, options)
        finally:
            for process in [*processes, *([watchers] if watchers else [])]:
                if process.returncode is None:
                    process.terminate()
            for process in processes:
                await process.wait()
            if watchers is not None:
                await watchers.wait()


async def run_phases(
    children: list[Child], readies: list[dict[str, Any]], watchers: Child | None, options: argparse.Namespace
) -> None:
    ready = readies[0]
    trust = RegistryTrust(ready["td"], ready["bundle"].encode())
    key = new_key_and_csr()
    async with registry_channel(ready["listen"], trust) as channel:
        reply = await identity_pb2_grpc.IdentityStub(channel).Enroll(
            identity_pb2.EnrollRequest(agent="bench", csr_pem=key.csr_pem.decode())
        )
    svid = svid_from_pem(reply.cert_chain_pem.encode(), key.private_key_pem, reply.trust_bundle_pem.encode())
    instance = catalog_pb2.Instance(
        agent="bench",
        version="1.0.0",
        peer_address="127.0.0.1:7411",
        capabilities=[catalog_pb2.Capability(name=f"bench.c{n}", schema_hash=schema_hash({}, {})) for n in range(5)],
    )
    ids: list[str] = []
    marks: list[tuple[float, int]] = []
    if watchers is not None:
        print(f"watchers: {(await watchers.line())['ready']} streams open", flush=True)
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[0]}", flush=True)
    print(
        f"{'phase':<10} {'ops/s':>9} {'registry CPU us/op':>19} {'others, cores':>14} {'loop max ms':>12} "
        f"{'loop p99 ms':>12} {'stalls >10ms':>13}"
    )
    channels = [registry_channel(r["mtls"], RegistryTrust(r["td"], r["bundle"].encode(), svid)) for r in readies]
    try:
        stubs = [registry_stub(c) for c in channels]  # call n goes to replica n mod replicas
        stub, shipper = stubs[0], receipts_pb2_grpc.ReceiptsStub(channels[0])
        every, top = max(1, options.instances // MAX_MARKS), [0]

        async def register(n: int) -> None:
            request = registry_pb2.RegisterRequest(instance=instance)
            reply = await stubs[n % len(stubs)].Register(request)
            ids.append(reply.instance_id)
            top[0] = max(top[0], reply.revision)
            if n % every == 0:
                marks.append((time.monotonic(), reply.revision))

        async def renew(n: int) -> None:
            await stubs[n % len(stubs)].Renew(registry_pb2.RenewRequest(instance_id=ids[n]))

        head = [""]

        async def ship(n: int) -> None:
            batch = receipts(svid.spiffe_id, 1 + n * 1000, 1000, head[0])
            last = batch[-1]
            signed = sign_head(svid, last.sidecar_instance_id, last.seq, last.hash)  # as a sidecar signs its head
            await shipper.ShipReceipts(receipts_pb2.ShipReceiptsRequest(receipts=batch, head=signed))
            head[0] = batch[-1].hash

        async def list_all(_: int) -> None:
            await stub.ListInstances(registry_pb2.ListInstancesRequest())

        checkers = [health_pb2_grpc.HealthStub(c) for c in channels]

        async def check(n: int) -> None:  # the floor: a gRPC call over mTLS that none of our code serves
            await checkers[n % len(checkers)].Check(health_pb2.HealthCheckRequest())

        phases: list[tuple[str, int, int, Callable[[int], Awaitable[None]]]] = [
            ("register", options.instances, options.concurrency, register),
            ("health", options.instances, options.concurrency, check),
            ("renew", options.instances, options.concurrency, renew),
            ("ship", options.batches, 1, ship),
            ("list", options.lists, 4, list_all),
        ]
        pids = [c.process.pid for c in children]
        ours = [os.getpid(), *([watchers.process.pid] if watchers else [])]  # the load generator
        for name, count, concurrency, one in phases:
            if name not in options.phases.split(",") and name != "register":
                continue
            spy = start_py_spy(pids[0], options.py_spy) if options.py_spy and name == options.py_spy_phase else None
            cpu_before, busy_before, started = sum(cpu_ns(p) for p in pids), machine_busy_ns(), time.perf_counter()
            ours_before = sum(cpu_ns(p) for p in ours)
            rate = await timed(count, concurrency, one)
            cpu, busy = sum(cpu_ns(p) for p in pids) - cpu_before, machine_busy_ns() - busy_before
            busy -= sum(cpu_ns(p) for p in ours) - ours_before
            elapsed = time.perf_counter() - started
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait()
            lags = [await child.lag() for child in children]
            worst = {k: max(lag[k] for lag in lags) for k in lags[0]}
            print(
                f"{name:<10} {rate:>9.1f} {cpu / 1000 / count:>19.0f} {(busy - cpu) / 1e9 / elapsed:>14.2f} "
                f"{worst['max_ms']:>12.1f} {worst['p99_ms']:>12.2f} {worst['over_10ms']:>13.0f}",
                flush=True,
            )
            if name == "register" and watchers is not None:
                await report_watchers(watchers, marks, top[0], pids)
                ours = [os.getpid()]  # the watchers' process has exited
    finally:
        for channel in channels:
            await channel.close()
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[0]}", flush=True)


async def report_watchers(watchers: Child, marks: list[tuple[float, int]], final: int, pids: list[int]) -> None:
    """Tells the watchers where the registrations ended and prints how far behind they were."""
    stdin = watchers.process.stdin
    assert stdin is not None
    cpu_before = sum(cpu_ns(p) for p in pids)
    stdin.write((json.dumps({"marks": marks, "final": final}) + "\n").encode())
    await stdin.drain()
    report = await watchers.line()
    lag = report["lag"]
    print(
        f"watch lag after Register answered: p50 {lag['p50_ms']:.0f} ms, p99 {lag['p99_ms']:.0f} ms, "
        f"max {lag['max_ms']:.0f} ms; all streams current {report['all_current_after_last_ms']} ms after the last "
        f"registration ({report['streams_not_current']} not current); {report['messages']} messages, "
        f"{report['reopened']} streams reopened; registry CPU while they caught up "
        f"{(sum(cpu_ns(p) for p in pids) - cpu_before) / 1e6:.0f} ms",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batches", type=int, default=10, help="ShipReceipts batches of 1,000 receipts")
    parser.add_argument("--lists", type=int, default=20)
    parser.add_argument("--store", default="", help="postgresql://... (a migrated, empty database); default SQLite")
    parser.add_argument("--replicas", type=int, default=1, help="registry processes on the one --store (PostgreSQL)")
    parser.add_argument("--watchers", type=int, default=0, help="Watch streams held while registering")
    parser.add_argument("--py-spy", type=Path, help="record the (first) registry's profile (py-spy, raw format)")
    parser.add_argument("--py-spy-phase", default="register", help="the phase --py-spy records")
    parser.add_argument("--watch-coalesce-s", type=float, help="the registry's watch_coalesce_s (default: its own)")
    parser.add_argument(
        "--phases", default="register,health,renew,ship,list", help="which phases to run (register always)"
    )
    parser.add_argument("--registry-log", type=Path, help="the registries log at INFO into this file, as in production")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve is not None:
        asyncio.run(serve_child(options.serve, options.store, options.watch_coalesce_s, options.registry_log))
    else:
        asyncio.run(drive(options))


if __name__ == "__main__":
    main()
