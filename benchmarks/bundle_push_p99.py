"""Latency of calls through the mesh while 1,000-policy bundles are pushed to it.

    PYTHONPATH=. .venv/bin/python benchmarks/bundle_push_p99.py [--quiet-calls 1500] [--pushes 4]
        [--concurrency 1] [--gap-s 1.0] [--trace-stalls] [--output table|json]
    .venv/bin/python benchmarks/bundle_push_p99.py --compare BEFORE_CHECKOUT AFTER_CHECKOUT [--rounds 2] ...

A real registry, two real sidecars (frontdesk calls echo) and the echo agent
(examples/echo_agent.py), each its own process. The bundle is the one of
benchmarks/policy_decisions.py (1,000 policies, 400 agents, 300 capabilities) plus the two
agents of this mesh and one policy that permits their calls, so both sidecars evaluate it on
every call. One client calls `echo` at concurrency 1 with nothing else happening (quiet), then at
`--concurrency` (default 1) while `--pushes` new revisions are pushed, one after the other, each once both
sidecars enforce the previous one, `--gap-s` apart (pushes). Each sidecar verifies and builds
every revision (hundreds of ms of CPU for this bundle); what this measures is how much of that
the calls in flight feel.

Before and after a change: `--compare` runs this script for each checkout in turn, `--rounds`
times, in one session (each run a fresh process with PYTHONPATH at that checkout, started from
outside both, so that checkout's meshwarden is what the registry and sidecars run; the script
uses only APIs both have), and prints both side by side. The event loop lag of the registry
and both sidecars during the pushes is reported where they export it: the longest
(meshwarden_event_loop_lag_max_seconds, read before and after the pushes) and how many of the
50 ms samples of meshwarden_event_loop_lag_seconds were later than 10 ms and 100 ms.

On a loaded machine a loop lag is mostly the time the process waited for a CPU.
`--trace-stalls` runs the registry and sidecars with benchmarks/loop_stall_trace on their
PYTHONPATH (it patches asyncio, so it works on any checkout) and reports, per process, the
longest event loop callback during the pushes in CPU time of the loop's thread, which load
does not inflate, with what it ran, and the longest garbage collection (CPU time, any thread:
a collection holds the GIL, so the loop too). Those are the figures to hold to the 10 ms bound.

`--attribute-lags` (root: it runs `perf record` on the scheduler's events) says where each
wall-time lag over 10 ms during the pushes went (loop_stall_trace/sched_attribution.py): the
loop's own work, waiting for a core (and who held the cores), or waiting for another thread of
the process (the GIL), with what that thread was running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

try:
    import aiohttp

    from meshwarden.addresses import parse_host_port
    from meshwarden.client import Client
    from meshwarden.errors import MeshError
    from meshwarden.identity.bootstrap import learn_registry_ca
    from meshwarden.policy_bundle import build, keygen, load_private_key, sign
    from meshwarden.policy_bundle.artifact import encode
    from meshwarden.registry_client import RegistryTrust, registry_channel, registry_stub
    from meshwarden.supervise import Child, meshwarden_argv, registry_health_tls, start
    from meshwarden.v1 import registry_pb2

    sys.path.insert(0, str(Path(__file__).parent))
    sys.path.insert(0, str(Path(__file__).parent / "loop_stall_trace"))
    import sched_attribution
    from policy_decisions import generate_bundle
except ModuleNotFoundError as exc:  # run from a checkout without PYTHONPATH
    sys.exit(f"bundle_push_p99.py: cannot import {exc.name}; run it with the project's venv and PYTHONPATH=<repo root>")

ECHO = Path(__file__).parents[1] / "examples" / "echo_agent.py"
STALL_TRACE = Path(__file__).resolve().parent / "loop_stall_trace"
KEY_ID = "bench"
MESH_AGENTS = ("frontdesk", "echo")
ALLOW = '@id("bench-mesh-calls")\npermit(principal, action == Action::"call", resource == Capability::"echo");\n'


def make_bundles(work: Path, revisions: int) -> tuple[Path, list[bytes]]:
    """Signed artifacts of revisions 1..`revisions` of the 1,000-policy bundle, and the
    directory of trusted keys the sidecars get."""
    source = work / "bundle"
    generate_bundle(source, 1000, random.Random(7))
    entities = json.loads((source / "entities.json").read_text())
    for agent in MESH_AGENTS:
        entities.append(
            {
                "uid": {"type": "Agent", "id": agent},
                "attrs": {"spiffe_id": f"spiffe://meshwarden.local/agent/{agent}", "team": "team00", "tier": 3},
                "parents": [{"type": "Team", "id": "team00"}],
            }
        )
    entities.append(
        {
            "uid": {"type": "Capability", "id": "echo"},
            "attrs": {"owner": "team00", "risk_tier": 1, "side_effects": False, "kind": "capability"},
            "parents": [{"type": "Toolset", "id": "toolset00"}],
        }
    )
    (source / "entities.json").write_text(json.dumps(entities, indent=1))
    (source / "policies" / "mesh.cedar").write_text(ALLOW)
    keys = keygen(work / "keys", KEY_ID)
    trusted = work / "trusted-keys"
    trusted.mkdir()
    (trusted / keys.public_key.name).write_bytes(keys.public_key.read_bytes())
    private = load_private_key(keys.private_key)
    artifacts = []
    for revision in range(1, revisions + 1):
        manifest = source / "manifest.toml"
        manifest.write_text(re.sub(r"(?m)^revision = \d+$", f"revision = {revision}", manifest.read_text()))
        artifacts.append(sign(encode(build(source).artifact), private, KEY_ID))
    return trusted, artifacts


async def push(registry: Child, data_dir: Path, artifact: bytes) -> int:
    ready = registry.addresses
    learned = await asyncio.to_thread(learn_registry_ca, parse_host_port(ready["listen"]), pin=ready["ca_fingerprint"])
    token = (data_dir / "operator.token").read_text().strip()
    async with registry_channel(ready["listen"], RegistryTrust(ready["trust_domain"], learned.bundle_pem)) as channel:
        reply = await registry_stub(channel).PushBundle(
            registry_pb2.PushBundleRequest(artifact=artifact),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=30,
        )
    return int(reply.revision)


class Scrapes:
    """Every read of an admin port's /metrics goes through here. Reading
    meshwarden_event_loop_lag_max_seconds resets it in the process (the worst since the
    previous scrape), so each read's value is folded into `worst`, per process."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self._http = http
        self.worst: dict[str, float] = {}

    async def text(self, child: Child) -> str:
        address = child.addresses["admin"]
        async with self._http.get(f"http://{address}/metrics") as response:
            text = await response.text()
        found = re.search(r"^meshwarden_event_loop_lag_max_seconds (\S+)$", text, re.M)
        if found:
            self.worst[address] = max(self.worst.get(address, 0.0), float(found.group(1)))
        return text

    async def reset(self, children: Sequence[Child]) -> None:
        """Starts a new worst-lag window for `children`."""
        for child in children:
            await self.text(child)
        self.worst.clear()

    async def worst_ms(self, child: Child) -> float | None:
        """The longest loop lag since `reset`; None when the process does not export it."""
        await self.text(child)
        worst = self.worst.get(child.addresses["admin"])
        return None if worst is None else round(worst * 1000, 1)


async def metric(scrapes: Scrapes, sidecar: Child, name: str) -> float | None:
    found = re.search(rf"^{name} (\S+)$", await scrapes.text(sidecar), re.M)
    return float(found.group(1)) if found else None


async def lag_buckets(scrapes: Scrapes, sidecar: Child) -> dict[str, float]:
    """The sidecar's event loop lag histogram (cumulative counts by upper bound); {} when the
    sidecar does not export it."""
    text = await scrapes.text(sidecar)
    found = re.findall(r'^meshwarden_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M)
    return {bound: float(count) for bound, count in found}


def lag_over(before: dict[str, float], after: dict[str, float]) -> dict[str, float] | None:
    """Samples of the loop lag probe (one per 50 ms) between two scrapes, and how many of
    them were later than 10 ms and 100 ms."""
    if not after:
        return None
    total = after["+Inf"] - before.get("+Inf", 0)
    return {
        "samples": total,
        "over_10ms": total - (after["0.01"] - before.get("0.01", 0)),
        "over_100ms": total - (after["0.1"] - before.get("0.1", 0)),
    }


async def wait_revision(scrapes: Scrapes, sidecars: Sequence[Child], revision: int) -> float:
    started = time.perf_counter()
    while True:
        seen = [await metric(scrapes, s, "meshwarden_sidecar_bundle_revision") for s in sidecars]
        if all(v is not None and v >= revision for v in seen):
            return time.perf_counter() - started
        if time.perf_counter() - started > 60:
            raise RuntimeError(f"revision {revision} not active on every sidecar within 60 s: {seen}")
        await asyncio.sleep(0.02)


async def call_once(client: Client, latencies: list[float], failures: list[str]) -> None:
    started = time.perf_counter()
    try:
        await client.invoke("echo", {"data": "x" * 64}, timeout=10)
    except MeshError as exc:
        failures.append(str(exc))
        return
    latencies.append(time.perf_counter() - started)


def figures(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    if not ordered:
        return {"calls": 0}

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"calls": len(ordered), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": round(ordered[-1] * 1000, 2)}


def trace_stalls(work: Path, *, frames: bool) -> Path:
    """Makes the processes started from now on record their loop stalls (loop_stall_trace)."""
    directory = work / "stalls"
    directory.mkdir()
    os.environ["MESHWARDEN_BENCH_STALL_DIR"] = str(directory)
    os.environ["MESHWARDEN_BENCH_STALL_FRAMES"] = "1" if frames else "0"
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(STALL_TRACE), os.environ.get("PYTHONPATH", "")) if p)
    return directory


def stalls_between(directory: Path, pids: dict[int, str], since: float, until: float) -> dict[str, object]:
    """Per process, the longest loop callback and collection (CPU ms) recorded in [since, until]."""
    found: dict[str, object] = {}
    for pid, name in pids.items():
        path = directory / f"{pid}.jsonl"
        records = [json.loads(line) for line in path.read_text().splitlines()[1:]] if path.exists() else []
        window = [r for r in records if since <= r["at"] <= until]
        loop = max((r for r in window if "loop_cpu_s" in r), key=lambda r: r["loop_cpu_s"], default=None)
        collection = max((r for r in window if "gc_cpu_s" in r), key=lambda r: r["gc_cpu_s"], default=None)
        found[name] = {
            "longest_loop_callback_cpu_ms": round(loop["loop_cpu_s"] * 1000, 1) if loop else 0.0,
            "what": f"{loop['what']}: {'; '.join(loop['frames'])}" if loop else "",
            "callbacks_over_10ms_cpu": sum(1 for r in window if r.get("loop_cpu_s", 0) > 0.01),
            "longest_gc_cpu_ms": round(collection["gc_cpu_s"] * 1000, 1) if collection else 0.0,
            "gc": f"generation {collection['generation']} in {collection['thread']}" if collection else "",
        }
    return found


def thread_names(pids: dict[int, str]) -> dict[int, str]:
    """`process:thread` by native thread id, for every thread the processes have now."""
    names = {}
    for pid, process in pids.items():
        for task in Path(f"/proc/{pid}/task").iterdir():
            comm = (task / "comm").read_text().strip() if (task / "comm").exists() else "?"
            names[int(task.name)] = f"{process}:{comm}"
    return names


def attribute_lags(
    stall_dir: Path, recorded: Path, names: dict[int, str], pids: dict[int, str], since: float, until: float
) -> dict[str, object]:
    """Each loop lag over 10 ms in [since, until] (monotonic), split by cause (sched_attribution)."""
    lags = {pid: sched_attribution.lag_records(stall_dir, pid, since, until) for pid in pids}
    for pid, records in lags.items():
        for record in records:  # Python's own names for its threads
            names.update({int(tid): f"{pids[pid]}:{name}" for tid, name in record["threads"].items()})
    schedule = sched_attribution.read_schedule(recorded, set(names))
    attributed = [
        sched_attribution.attribute_lag(record, schedule, pids[pid], names)
        for pid, records in lags.items()
        for record in records
    ]
    return {"summary": sched_attribution.summarize(attributed), "lags": attributed}


async def run(args: argparse.Namespace, work: Path) -> dict[str, object]:
    trusted, artifacts = await asyncio.to_thread(make_bundles, work, 1 + args.pushes)
    tracing = args.trace_stalls or args.attribute_lags
    stall_dir = trace_stalls(work, frames=args.trace_stalls) if tracing else None
    recording = None
    names: dict[int, str] = {}
    children: list[Child] = []
    try:
        registry_dir = work / "registry"
        registry = await start(
            "registry",
            meshwarden_argv(
                "registry",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                str(registry_dir),
                "--admin-listen",
                "127.0.0.1:0",
            ),  # fmt: skip
            log_dir=work / "logs",
            env={"MESHWARDEN_REGISTRY_ALLOW_UNVERIFIED_BUNDLES": "true"},  # older checkouts ignore it
            health_tls=registry_health_tls,
        )
        children.append(registry)
        await push(registry, registry_dir, artifacts[0])
        sidecars = []
        for agent in ("echo", "frontdesk"):
            argv = meshwarden_argv(
                "sidecar", "run", "--agent", agent, "--registry", registry.addresses["listen"],
                "--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                "--gateway-listen", "off", "--data-dir", str(work / agent), "--bundle-keys", str(trusted),
            )  # fmt: skip
            sidecars.append(await start(f"sidecar-{agent}", argv, log_dir=work / "logs", timeout_s=60))
            children.append(sidecars[-1])
        echo_argv = [sys.executable, str(ECHO), "--sidecar", sidecars[0].addresses["listen"], "--listen", "127.0.0.1:0"]
        children.append(await start("echo", [*echo_argv, "--announce"], log_dir=work / "logs"))
        failures: list[str] = []
        async with Client(sidecars[1].addresses["listen"]) as client, aiohttp.ClientSession() as http:
            scrapes = Scrapes(http)
            deadline = time.monotonic() + 30
            while True:  # until frontdesk's catalog has echo
                try:
                    await client.invoke("echo", {}, timeout=5)
                    break
                except MeshError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            for _ in range(args.warmup):
                await call_once(client, [], failures)
            quiet: list[float] = []
            for _ in range(args.quiet_calls):
                await call_once(client, quiet, failures)
            lag_before = [await lag_buckets(scrapes, s) for s in sidecars]
            watched = {"registry": registry, "sidecar-echo": sidecars[0], "sidecar-frontdesk": sidecars[1]}
            await scrapes.reset(list(watched.values()))
            during: list[float] = []
            activations: list[float] = []
            pushing = True

            async def calls() -> None:
                while pushing:
                    await call_once(client, during, failures)

            if args.attribute_lags:
                loops = [child.process.pid for child in watched.values()]  # each runs its loop in its main thread
                recording = sched_attribution.start_recording(work / "sched.data", loops)
                await asyncio.sleep(1.0)  # perf is recording once it has set up every CPU's buffer
            callers = [asyncio.create_task(calls()) for _ in range(args.concurrency)]
            pushes_from, pushes_from_mono = time.time(), time.monotonic()
            for artifact in artifacts[1:]:
                revision = await push(registry, registry_dir, artifact)
                activations.append(await wait_revision(scrapes, sidecars, revision))
                await asyncio.sleep(args.gap_s)
            pushing = False
            pushes_until, pushes_until_mono = time.time(), time.monotonic()
            await asyncio.gather(*callers)
            lag = [lag_over(b, await lag_buckets(scrapes, s)) for b, s in zip(lag_before, sidecars, strict=True)]
            worst = {name: await scrapes.worst_ms(child) for name, child in watched.items()}
            pids = {child.process.pid: name for name, child in watched.items()}
            names = thread_names(pids) if recording is not None else {}
    finally:
        if recording is not None:
            await asyncio.to_thread(sched_attribution.stop_recording, recording)
        for child in reversed(children):
            await child.stop()
    stalls = stalls_between(stall_dir, pids, pushes_from, pushes_until) if args.trace_stalls and stall_dir else None
    attribution = (
        attribute_lags(stall_dir, work / "sched.data", names, pids, pushes_from_mono, pushes_until_mono)
        if args.attribute_lags and stall_dir
        else None
    )
    return {
        "quiet": figures(quiet),
        "pushes": figures(during),
        "revisions_pushed": args.pushes,
        "concurrency": args.concurrency,
        "activation_s": [round(a, 2) for a in activations],
        "sidecar_loop_lag_during_pushes": lag,
        "max_loop_lag_ms_during_pushes": worst,
        "loop_stalls_during_pushes": stalls,
        "lag_attribution": attribution,
        "failures": len(failures),
        "first_failure": failures[0] if failures else "",
        "meshwarden": str(Path(sys.modules["meshwarden"].__file__ or "").parent),
        "loadavg": os.getloadavg()[0],
    }


def compare(args: argparse.Namespace, passed: Sequence[str]) -> int:
    """Runs this script for each checkout in turn (`--rounds` times) and prints both."""
    script = str(Path(__file__).resolve())
    results: dict[str, list[dict[str, object]]] = {checkout: [] for checkout in args.compare}
    for _ in range(args.rounds):
        for checkout in args.compare:
            env = {**os.environ, "PYTHONPATH": str(Path(checkout).resolve())}
            done = subprocess.run(
                [sys.executable, script, *passed, "--output", "json"],
                env=env,
                cwd=tempfile.gettempdir(),  # not a checkout: PYTHONPATH decides which meshwarden runs
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode not in (0, 1):
                sys.exit(f"bundle_push_p99.py for {checkout} failed:\n{done.stderr[-3000:]}")
            results[checkout].append(json.loads(done.stdout))
    if args.output == "json":
        print(json.dumps(results, indent=2))
        return 0
    print("checkout | quiet p50/p99 ms | pushes p50/p99/max ms | calls | max loop lag ms (registry, echo, frontdesk)")
    for index in range(args.rounds):
        for checkout in args.compare:
            r = results[checkout][index]
            quiet, pushes = r["quiet"], r["pushes"]
            assert isinstance(quiet, dict) and isinstance(pushes, dict)
            worst = r.get("max_loop_lag_ms_during_pushes", {})
            assert isinstance(worst, dict)
            print(
                f"{checkout} | {quiet.get('p50_ms')}/{quiet.get('p99_ms')} | "
                f"{pushes.get('p50_ms')}/{pushes.get('p99_ms')}/{pushes.get('max_ms')} | {pushes.get('calls')} | "
                f"{', '.join(str(v) for v in worst.values())} | loadavg {r['loadavg']:.1f}, failures {r['failures']}"
            )
            stalls = r.get("loop_stalls_during_pushes")
            if isinstance(stalls, dict):
                for name, figures_of in stalls.items():
                    print(f"    {name}: {figures_of}")
            attribution = r.get("lag_attribution")
            if isinstance(attribution, dict):
                print_attribution(attribution)
    return 0


def print_attribution(attribution: dict[str, object]) -> None:
    summary, lags = attribution["summary"], attribution["lags"]
    assert isinstance(summary, dict) and isinstance(lags, list)
    for process, entry in summary.items():
        print(f"    {process}: {entry}")
    for lag in sorted(lags, key=lambda lag: -lag["lag_ms"])[:12]:
        print(f"      {lag['process']} {lag['lag_ms']} ms: {lag['parts_ms']}")
        details = {k: lag[k] for k in ("cores_held_by_ms", "worker_work", "longest_callback", "collections") if lag[k]}
        print(f"        {details} callbacks {lag['loop_callbacks']} ({lag['loop_callbacks_cpu_ms']} ms CPU)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quiet-calls", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--pushes", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=1, help="callers in flight while the bundles are pushed")
    parser.add_argument("--gap-s", type=float, default=1.0, help="pause after each revision is active everywhere")
    parser.add_argument(
        "--trace-stalls",
        action="store_true",
        help="longest loop callback and collection in CPU time (loop_stall_trace)",
    )
    parser.add_argument(
        "--attribute-lags",
        action="store_true",
        help="split each loop lag over 10 ms by cause, from the scheduler's events (perf record; root)",
    )
    parser.add_argument("--output", choices=["table", "json"], default="table")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="two checkouts, measured in turn")
    parser.add_argument("--rounds", type=int, default=1, help="with --compare: how many times each, alternating")
    args = parser.parse_args(argv)
    if args.compare:
        raw = list(sys.argv[1:] if argv is None else argv)
        return compare(args, _without_compare_options(raw))
    with tempfile.TemporaryDirectory(prefix="bundle-push-") as work:
        result = asyncio.run(run(args, Path(work)))
    if args.output == "json":
        print(json.dumps(result, indent=2))
    else:
        for phase in ("quiet", "pushes"):
            print(f"{phase:<7} {result[phase]}")
        attribution = result["lag_attribution"]
        if isinstance(attribution, dict):
            print("lag attribution:")
            print_attribution(attribution)
        for key in (
            "activation_s",
            "sidecar_loop_lag_during_pushes",
            "max_loop_lag_ms_during_pushes",
            "loop_stalls_during_pushes",
            "failures",
            "meshwarden",
            "loadavg",
        ):
            print(f"{key}: {result[key]}")
    return 1 if result["failures"] else 0


def _without_compare_options(argv: Sequence[str]) -> list[str]:
    """The arguments to pass on to each run: all but --compare A B, --rounds N and --output."""
    kept, skip = [], 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in ("--compare", "--rounds", "--output"):
            skip = 0 if "=" in arg else (2 if name == "--compare" else 1)
            continue
        kept.append(arg)
    return kept


if __name__ == "__main__":
    sys.exit(main())
