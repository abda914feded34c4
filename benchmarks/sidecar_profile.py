"""Where a sidecar's CPU and memory go: a mesh under steady load, both sidecars measured.

    PYTHONPATH=. .venv/bin/python benchmarks/sidecar_profile.py [--seconds 20] [--rounds 6]
        [--concurrency 16] [--py-spy DIR] [--calls-for-memory 10000,100000] [--idle-only]
        [--ab-tree CHECKOUT | --ab-env K=V,...] [--keyed] [--keep-logs]

Starts the same mesh as latency.py (a real registry, two sidecars, the echo agent; an allow-all
signed bundle that both sidecars evaluate on every call), reads each sidecar's RSS idle, then
drives `--concurrency` callers at sidecar A for `--seconds` and reports each sidecar's CPU time
per call (user + system from /proc, over the whole process, every thread), calls/s and the p50
under that load. `--py-spy DIR` records both sidecars meanwhile (`py-spy record --native
--format speedscope`; it slows them, so take CPU figures from a run without it).
`--calls-for-memory` keeps calling afterwards until each count is reached and reads RSS there
(the 10k-against-100k leak check).

A/B in one run: `--ab-tree CHECKOUT` starts a second mesh whose sidecars import meshwarden from
another checkout (`git archive COMMIT | tar -x -C DIR`), `--ab-env` one whose sidecars get extra
environment variables; the load alternates between the meshes in `--rounds` slices. On a shared
machine CPU per call moves with the neighbours between runs, so compare within a run
(benchmarks/README.md, "Cheaper calls", has the method and the A/A noise).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency import (  # noqa: E402  (a script beside latency.py, run by path)
    BenchError,
    Fleet,
    Invoke,
    Samples,
    channel_to,
    concurrent,
    first_answer,
    log,
    machine_busy_s,
    payload_of,
    sidecar_invoke,
    start_mesh,
)
from process_memory import by_mapping, rollup, threads  # noqa: E402

SIDECARS = ("sidecar-a", "sidecar-b")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (every thread), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def idle_memory(pid: int) -> dict[str, object]:
    """RSS, PSS and private memory of an idle sidecar, its threads, and its largest mappings."""
    return {
        **rollup(pid).as_dict(),
        "threads": threads(pid),
        "largest_mappings": {m.name: [round(m.rss_mb, 1), round(m.private_mb, 1)] for m in by_mapping(pid, 12)},
    }


def start_py_spy(pid: int, out: Path, seconds: float, *extra: str) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100", "--output", str(out)]
    return subprocess.Popen([*argv, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def calls_until(target: int, done: int, concurrency: int, invoke: Invoke) -> int:
    samples = Samples()
    while done < target:
        done += await concurrent(invoke, concurrency, 2.0, samples)
    return done


@dataclass
class Variant:
    """One mesh of the run: its sidecars' pids, its load, what it has measured so far."""

    name: str
    invoke: Invoke
    pids: dict[str, int]
    cpu_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SIDECARS, 0.0))
    samples: Samples = field(default_factory=Samples)
    answered: int = 0
    seconds: float = 0.0

    async def slice(self, concurrency: int, seconds: float) -> None:
        before = {s: cpu_s(self.pids[s]) for s in SIDECARS}
        self.answered += await concurrent(self.invoke, concurrency, seconds, self.samples)
        self.seconds += seconds
        for s in SIDECARS:
            self.cpu_s[s] += cpu_s(self.pids[s]) - before[s]

    def figures(self) -> dict[str, object]:
        total = len(self.samples.latencies_ns)
        lat = sorted(self.samples.latencies_ns)
        return {
            "calls": total,
            "errors": self.samples.errors,
            "calls_per_s": round(self.answered / self.seconds, 1),
            "cpu_us_per_call": {s: round(self.cpu_s[s] / max(total, 1) * 1e6) for s in SIDECARS},
            "p50_ms_at_concurrency": round(lat[len(lat) // 2] / 1e6, 3) if lat else None,
            "rss_mb": {s: round(rss_mb(self.pids[s]), 1) for s in SIDECARS},
        }


async def start_variant(
    fleet: Fleet, name: str, env: dict[str, str] | None, payload_bytes: int, keyed: bool
) -> Variant:
    known = set(fleet.groups)
    mesh = await start_mesh(fleet, name, (), env)
    channel = channel_to(mesh.caller_sidecar)
    fleet.on_exit(channel.close)
    invoke = sidecar_invoke(channel, payload_of(payload_bytes), keyed=keyed)
    await first_answer(name or "mesh", invoke, payload_bytes)
    prefix = f"{name}-" if name else ""
    pids = {
        s: pid for pid, s_name in fleet.groups.items() if pid not in known for s in SIDECARS if s_name == prefix + s
    }
    return Variant(name or "this", invoke, pids)


async def measure(args: argparse.Namespace, fleet: Fleet) -> dict[str, object]:
    report: dict[str, object] = {}
    async with fleet:
        variants = [await start_variant(fleet, "", None, args.payload_bytes, args.keyed)]
        if args.ab_env or args.ab_tree:
            env = dict(kv.split("=", 1) for kv in args.ab_env.split(",") if kv)
            if args.ab_tree:  # its sidecars import meshwarden from that checkout, not from the current directory
                env |= {"PYTHONSAFEPATH": "1", "PYTHONPATH": str(Path(args.ab_tree).resolve())}
            variants.append(await start_variant(fleet, "b", env, args.payload_bytes, args.keyed))
        await asyncio.sleep(2.0)
        report["rss_idle_mb"] = {v.name: {s: round(rss_mb(v.pids[s]), 1) for s in SIDECARS} for v in variants}
        log(f"idle RSS: {report['rss_idle_mb']}")
        report["idle_memory_mb"] = {v.name: {s: idle_memory(v.pids[s]) for s in SIDECARS} for v in variants}
        if args.idle_only:
            return report
        for v in variants:
            await concurrent(v.invoke, args.concurrency, 2.0, Samples())  # warm-up
        spies: list[subprocess.Popen[bytes]] = []
        if args.py_spy:
            out = Path(args.py_spy)
            out.mkdir(parents=True, exist_ok=True)
            for s in SIDECARS:
                argv = ("--native", "--format", "speedscope")
                spies.append(start_py_spy(variants[0].pids[s], out / f"{s}.speedscope.json", args.seconds, *argv))
            await asyncio.sleep(1.0)  # py-spy attaches
        busy_before, wall_before = machine_busy_s(), time.monotonic()
        slice_s = args.seconds / args.rounds
        for r in range(args.rounds):
            for v in variants[r % len(variants) :] + variants[: r % len(variants)]:
                await v.slice(args.concurrency, slice_s)
        report["machine_busy_cores"] = round((machine_busy_s() - busy_before) / (time.monotonic() - wall_before), 2)
        report["variants"] = {v.name: v.figures() for v in variants}
        for spy in spies:
            _, err = await asyncio.to_thread(spy.communicate)
            if spy.returncode:
                log(f"py-spy failed: {err.decode(errors='replace')[-400:]}")
        for v in variants:
            done = len(v.samples.latencies_ns)
            for target in args.calls_for_memory:
                done = await calls_until(target, done, args.concurrency, v.invoke)
                report[f"{v.name}_rss_after_{target}_calls_mb"] = {s: round(rss_mb(v.pids[s]), 1) for s in SIDECARS}
                log(f"{v.name} after {done} calls: RSS {report[f'{v.name}_rss_after_{target}_calls_mb']}")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--payload-bytes", type=int, default=1024)
    parser.add_argument("--py-spy", default="", help="directory for py-spy profiles of both sidecars")
    parser.add_argument("--rounds", type=int, default=6, help="slices the load alternates between meshes in")
    parser.add_argument("--ab-env", default="", help="K=V,K=V: a second mesh whose sidecars get this environment")
    parser.add_argument("--ab-tree", default="", help="a checkout: a second mesh whose sidecars run its code")
    parser.add_argument(
        "--keyed", action="store_true", help="each call with a fresh idempotency key, as the SDK sends it by default"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory with every log")
    parser.add_argument(
        "--idle-only", action="store_true", help="report each sidecar's idle memory (RSS, PSS, mappings) and stop"
    )
    parser.add_argument("--calls-for-memory", default="", help="comma-separated call counts at which to read RSS")
    args = parser.parse_args()
    args.calls_for_memory = [int(c) for c in args.calls_for_memory.split(",") if c.strip()]
    work = Path(tempfile.mkdtemp(prefix="meshwarden-profile-"))
    fleet = Fleet(work)
    try:
        report = asyncio.run(measure(args, fleet))
    except BenchError as exc:
        log(f"failed: {exc}")
        return 1
    finally:
        fleet.kill_leftovers()
        if args.keep_logs:
            log(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
