"""Time to effect of a kill switch: from the command to the last of N sidecars enforcing it.

    PYTHONPATH=. .venv/bin/python benchmarks/kill_time_to_effect.py [--sidecars 100] [--rounds 50]
        [--store sqlite|postgresql|postgresql://USER@HOST:PORT/DB] [--replicas 1]
        [--start-concurrency 6] [--pause-s 1] [--cli-runs 3] [--idle-s 10] [--output table|json]
        [--keep-logs]

Starts a real registry (SQLite in a temporary data directory by default; with --store, that
PostgreSQL database, migrated first, or with `--store postgresql` alone or --replicas above 1
and no URL, a throwaway cluster as the tests start one; --replicas N registry processes on it,
the sidecars spread over them round-robin, each watching one replica, and every switch engaged
through the first, so that time to effect counts the way across replicas) and N real sidecars (pure callers: no agent, each its own process,
SVID and watch stream; `--allow-without-policy` so that no bundle is needed to be healthy),
then engages and lifts a kill switch `--rounds` times, `--pause-s` apart, through the
registry's Controls service, as `meshwarden kill` does. A switch counts as enforced by a sidecar once the sidecar has
applied it to its index (from then on it refuses matching calls and has cancelled matching
calls in flight) and acknowledged that to the registry; the Kill RPC answers when every live
sidecar has. For each kill and each lift it records:

  rpc       the Kill (LiftKill) round trip seen by the operator's client: from sending the
            command to hearing that the last sidecar enforces it (an upper bound on the time
            to effect: the acknowledgement and the answer still had to travel)
  registry  what the registry reports (`took`): from storing the switch to the last
            acknowledgement

and, `--cli-runs` times, the wall time of the whole `meshwarden kill` command (a new Python
process: start-up, learning the registry's CA, the RPC) for scale. The scope is a session id
no call uses, so nothing else happens meanwhile. Exits 1 if any round was not enforced by all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from meshwarden.addresses import parse_host_port
from meshwarden.identity.bootstrap import learn_registry_ca
from meshwarden.registry_client import RegistryTrust, registry_channel
from meshwarden.supervise import Child, meshwarden_argv, registry_health_tls, start
from meshwarden.v1 import controls_pb2, controls_pb2_grpc
from tests.postgres_cluster import Cluster, throwaway_cluster


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far (clock ticks, from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent (all cores, all processes, steal included)."""
    fields = Path("/proc/stat").read_text().partition("\n")[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def database_pids(cluster: Cluster | None) -> list[int]:
    """The throwaway cluster's server processes (the postmaster and its children), to count the
    database's CPU too; none for a database the caller gave (it may be on another host)."""
    if cluster is None:
        return []
    try:
        postmaster = int((cluster.home / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == postmaster:
            pids.append(int(stat.parent.name))
    return pids


def database_transactions(cluster: Cluster | None) -> int:
    """Transactions committed in the benchmark's database so far (pg_stat_database; 0 for a
    database the caller gave): how many the registries run per change."""
    if cluster is None:
        return 0
    return int(cluster.psql("SELECT xact_commit FROM pg_stat_database WHERE datname = 'killbench'"))


def group_cpu_s(registries: list[Child], sidecars: list[Child], database: list[int]) -> tuple[float, float, float]:
    """CPU seconds so far of all registry replicas, all sidecars, the database's processes."""
    return (
        sum(cpu_s(r.process.pid) for r in registries),
        sum(cpu_s(c.process.pid) for c in sidecars),
        sum(cpu_s(pid) for pid in database),
    )


async def idle_cpu_ms_per_s(
    registries: list[Child], sidecars: list[Child], database: list[int], seconds: float
) -> tuple[float, float, float]:
    """CPU the registries, all sidecars and the database spend doing nothing in particular
    (leases, keepalives, status reports), per second: subtracted from the per-change figures ("net")."""
    before = group_cpu_s(registries, sidecars, database)
    await asyncio.sleep(seconds)
    after = group_cpu_s(registries, sidecars, database)
    registry, sidecar, db = ((a - b) * 1000 / seconds for a, b in zip(after, before, strict=True))
    return registry, sidecar, db


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


@contextlib.contextmanager
def store_url(store: str, replicas: int) -> Iterator[tuple[str, Cluster | None]]:
    """The --store to give the registries: "" (SQLite in the data dir), the URL given, or a
    database in a throwaway cluster started here and removed afterwards."""
    if store.startswith("postgresql://"):
        yield store, None
    elif store == "postgresql" or (store != "sqlite" and replicas > 1):
        with throwaway_cluster() as cluster:
            cluster.psql("CREATE DATABASE killbench")
            yield cluster.url("killbench"), cluster
    elif replicas > 1:
        raise SystemExit("several replicas need one PostgreSQL store: --store postgresql[://...]")
    else:
        yield "", None


def migrate(store: str) -> None:
    """Applies the schema (nothing when it is current), as an operator does before the replicas start."""
    done = subprocess.run(
        meshwarden_argv("registry", "migrate", "--store", store), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"meshwarden registry migrate: {done.stderr.strip()}")


async def start_registry(work: Path, store: str, n: int) -> Child:
    return await start(
        "registry" if n == 0 else f"registry-{n}",
        meshwarden_argv(
            "registry",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--data-dir",
            str(work / ("registry" if n == 0 else f"registry-{n}")),
            *(["--store", store] if store else []),
        ),
        log_dir=work / "logs",
        env={"MESHWARDEN_REGISTRY_ALLOW_UNVERIFIED_BUNDLES": "true"},  # older checkouts ignore it
        health_tls=registry_health_tls,
    )


async def start_mesh(
    work: Path, store: str, replicas: int, sidecars: int, concurrency: int
) -> tuple[list[Child], list[Child]]:
    """The registries (the first alone: it makes the CA and the operator token the others take
    from the store), then the sidecars, sidecar n watching replica n mod replicas."""
    registries = [await start_registry(work, store, 0)]
    try:
        registries += await asyncio.gather(*(start_registry(work, store, n) for n in range(1, replicas)))
    except BaseException:
        await asyncio.gather(*(r.stop() for r in registries))
        raise
    gate = asyncio.Semaphore(concurrency)
    started: list[Child] = []

    async def one(n: int) -> Child:
        async with gate:
            child = await start(
                f"sidecar-{n:03d}",
                meshwarden_argv(
                    "sidecar",
                    "run",
                    "--agent",
                    f"bench-{n:03d}",
                    "--registry",
                    registries[n % len(registries)].addresses["listen"],
                    "--listen",
                    "127.0.0.1:0",
                    "--peer-listen",
                    "127.0.0.1:0",
                    "--admin-listen",  # a hundred sidecars on one host cannot share the default ports
                    "off",
                    "--gateway-listen",
                    "off",
                    "--data-dir",
                    str(work / "sidecars" / f"{n:03d}"),
                    "--allow-without-policy",
                    "true",
                ),
                log_dir=work / "logs",
                timeout_s=120,
            )
            started.append(child)
            return child

    try:  # one sidecar that cannot start cancels the others (a TaskGroup), and what did start is stopped
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(n)) for n in range(sidecars)]
    except BaseException:
        await asyncio.gather(*(c.stop() for c in [*reversed(started), *registries]))
        raise
    return registries, [task.result() for task in tasks]


async def measure(
    registry: Child, token_file: Path, sidecars: int, rounds: int, pause_s: float
) -> dict[str, list[float]]:
    ready = registry.addresses
    learned = await asyncio.to_thread(learn_registry_ca, parse_host_port(ready["listen"]), pin=ready["ca_fingerprint"])
    token = token_file.read_text().strip()
    metadata = (("authorization", f"Bearer {token}"),)
    figures: dict[str, list[float]] = {"kill_rpc": [], "kill_registry": [], "lift_rpc": [], "lift_registry": []}
    wait = datetime.timedelta(seconds=10)
    async with registry_channel(ready["listen"], RegistryTrust(ready["trust_domain"], learned.bundle_pem)) as channel:
        stub = controls_pb2_grpc.ControlsStub(channel)
        for _ in range(600):  # until every sidecar watches: a warm-up switch all of them acknowledge
            probe = await stub.Kill(
                controls_pb2.KillRequest(
                    scope_kind=controls_pb2.SCOPE_KIND_SESSION, scope_value="bench-warmup", reason="warm-up", wait=wait
                ),
                metadata=metadata,
                timeout=30,
            )
            await stub.LiftKill(controls_pb2.LiftKillRequest(id=probe.kill_switch.id, wait=wait), metadata=metadata)
            if probe.enforcement.expected == sidecars and probe.enforcement.enforced == sidecars:
                break
            await asyncio.sleep(0.1)
        else:
            raise SystemExit(f"only {probe.enforcement.expected} of {sidecars} sidecars ever watched")
        for n in range(rounds):
            request = controls_pb2.KillRequest(
                scope_kind=controls_pb2.SCOPE_KIND_SESSION, scope_value=f"bench-{n}", reason="benchmark", wait=wait
            )
            began = time.perf_counter()
            killed = await stub.Kill(request, metadata=metadata, timeout=30)
            figures["kill_rpc"].append((time.perf_counter() - began) * 1000)
            figures["kill_registry"].append(killed.enforcement.took.ToMicroseconds() / 1000)
            _check(killed.enforcement, sidecars, f"kill {n}")
            await asyncio.sleep(pause_s)
            began = time.perf_counter()
            lifted = await stub.LiftKill(
                controls_pb2.LiftKillRequest(id=killed.kill_switch.id, wait=wait), metadata=metadata, timeout=30
            )
            figures["lift_rpc"].append((time.perf_counter() - began) * 1000)
            figures["lift_registry"].append(lifted.enforcement.took.ToMicroseconds() / 1000)
            _check(lifted.enforcement, sidecars, f"lift {n}")
            await asyncio.sleep(pause_s)
    return figures


def _check(enforcement: controls_pb2.Enforcement, sidecars: int, what: str) -> None:
    if enforcement.enforced != sidecars or enforcement.expected != sidecars:
        raise SystemExit(
            f"{what}: enforced by {enforcement.enforced}/{enforcement.expected} of {sidecars} sidecars; "
            f"not acknowledged: {', '.join(enforcement.not_acknowledged)}"
        )


def cli_runs(registry: Child, token_file: Path, runs: int) -> list[float]:
    """Wall time of the whole `meshwarden kill` command, Python start-up included."""
    seconds = []
    common = [
        "--registry",
        registry.addresses["listen"],
        "--ca-pin",
        registry.addresses["ca_fingerprint"],
        "--operator-token-file",
        str(token_file),
    ]
    for n in range(runs):
        began = time.perf_counter()
        done = subprocess.run(
            meshwarden_argv("kill", "--session", f"cli-{n}", "--reason", "benchmark", "--output", "json", *common),
            capture_output=True,
            text=True,
            check=True,
        )
        seconds.append((time.perf_counter() - began) * 1000)
        switch = json.loads(done.stdout)["kill_switch"]["id"]
        subprocess.run(meshwarden_argv("kill", "lift", switch, *common), capture_output=True, check=True)
    return seconds


async def run(args: argparse.Namespace) -> dict[str, object]:
    with store_url(args.store, args.replicas) as (store, cluster):
        if store:
            await asyncio.to_thread(migrate, store)
        return await run_on(args, store, cluster)


async def run_on(args: argparse.Namespace, store: str, cluster: Cluster | None) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="meshwarden-kill-bench-"))
    token_file = work / "registry" / "operator.token"
    children: list[Child] = []
    ok = False
    try:
        began = time.perf_counter()
        registries, sidecars = await start_mesh(work, store, args.replicas, args.sidecars, args.start_concurrency)
        children = [*registries, *sidecars]
        started_s = time.perf_counter() - began
        database = database_pids(cluster)
        idle = await idle_cpu_ms_per_s(registries, sidecars, database, args.idle_s)
        before = (*group_cpu_s(registries, sidecars, database), machine_busy_s())
        load_before = os.getloadavg()[0]
        transactions = await asyncio.to_thread(database_transactions, cluster)
        wall = time.perf_counter()
        figures = await measure(registries[0], token_file, args.sidecars, args.rounds, args.pause_s)
        wall = time.perf_counter() - wall
        after = (*group_cpu_s(registries, sidecars, database), machine_busy_s())
        transactions = await asyncio.to_thread(database_transactions, cluster) - transactions
        changes = 2 * args.rounds + 2  # kills and lifts, and the warm-up pair
        spent = [after[i] - before[i] for i in range(3)]
        cpu = {
            "registry_cpu_ms_per_change": round(spent[0] * 1000 / changes, 1),
            "sidecars_cpu_ms_per_change": round(spent[1] * 1000 / changes, 1),
            "database_cpu_ms_per_change": round(spent[2] * 1000 / changes, 1),
            "registry_idle_cpu_ms_per_s": round(idle[0], 1),
            "sidecars_idle_cpu_ms_per_s": round(idle[1], 1),
            "database_idle_cpu_ms_per_s": round(idle[2], 1),
            "sidecars_net_cpu_ms_per_change": round((spent[1] * 1000 - idle[1] * wall) / changes, 1),
            "registry_net_cpu_ms_per_change": round((spent[0] * 1000 - idle[0] * wall) / changes, 1),
            "database_net_cpu_ms_per_change": round((spent[2] * 1000 - idle[2] * wall) / changes, 1),
            "database_transactions_per_change": round(transactions / changes, 1),
            "other_work_cores": round(((after[3] - before[3]) - sum(spent)) / wall, 2),
            "load_average": f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after",
        }
        cli = await asyncio.to_thread(cli_runs, registries[0], token_file, args.cli_runs)
        ok = True
    finally:
        await asyncio.gather(*(c.stop() for c in reversed(children)))
        if ok and not args.keep_logs:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work}", file=sys.stderr)
    summary: dict[str, object] = {
        "store": "postgresql" if store else "sqlite",
        "replicas": args.replicas,
        "sidecars": args.sidecars,
        "rounds": args.rounds,
        "start_s": round(started_s, 1),
        **cpu,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }
    for name, values in {**figures, "cli_wall": cli}.items():
        if values:
            summary[name] = {
                "p50_ms": round(statistics.median(values), 1),
                "p99_ms": round(percentile(values, 99), 1),
                "max_ms": round(max(values), 1),
                "n": len(values),
            }
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sidecars", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=50, help="kills, each followed by its lift")
    parser.add_argument(
        "--store",
        default="",
        help="sqlite, postgresql (a throwaway cluster) or postgresql://USER@HOST:PORT/DB; "
        "by default SQLite with one replica and a throwaway cluster with several",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="registry processes on the one PostgreSQL store; kills go through the first",
    )
    parser.add_argument("--start-concurrency", type=int, default=6, help="sidecars starting at once")
    parser.add_argument("--cli-runs", type=int, default=3)
    parser.add_argument(
        "--pause-s",
        type=float,
        default=1.0,
        help="between changes, so each meets a quiet mesh (a change's deferred file writes end 0.5 s after it)",
    )
    parser.add_argument("--idle-s", type=float, default=10.0, help="how long to measure idle CPU first")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    summary = asyncio.run(run(args))
    if args.output == "json":
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"{summary['replicas']} registry replica(s) on {summary['store']}, {summary['sidecars']} sidecars spread over "
        f"them (started in {summary['start_s']} s), {summary['rounds']} kills and lifts through the first"
    )
    print(f"{'':<16} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'n':>5}")
    for name in ("kill_rpc", "kill_registry", "lift_rpc", "lift_registry", "cli_wall"):
        row = summary.get(name)
        if isinstance(row, dict):
            print(f"{name:<16} {row['p50_ms']:>8} {row['p99_ms']:>8} {row['max_ms']:>8} {row['n']:>5}")
    print(
        f"CPU per change: registry {summary['registry_cpu_ms_per_change']} ms, all sidecars together "
        f"{summary['sidecars_cpu_ms_per_change']} ms; net of idle work (registry "
        f"{summary['registry_idle_cpu_ms_per_s']} ms/s, sidecars {summary['sidecars_idle_cpu_ms_per_s']} ms/s): "
        f"registry {summary['registry_net_cpu_ms_per_change']} ms, sidecars {summary['sidecars_net_cpu_ms_per_change']} ms"
    )
    print(
        f"database (a throwaway cluster's processes only): {summary['database_cpu_ms_per_change']} ms per change, "
        f"{summary['database_net_cpu_ms_per_change']} ms net of idle ({summary['database_idle_cpu_ms_per_s']} ms/s), "
        f"{summary['database_transactions_per_change']} transactions per change (idle ones included)"
    )
    print(
        f"other work on the machine meanwhile: {summary['other_work_cores']} cores busy; "
        f"load average {summary['load_average']}"
    )
    print(summary["machine"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
