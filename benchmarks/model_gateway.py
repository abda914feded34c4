"""What the model gateway adds to a model call: latency and sidecar CPU per call, against
calling the provider directly, in the same run.

    PYTHONPATH=. .venv/bin/python benchmarks/model_gateway.py [--calls 1000] [--rounds 10] [--output json]
        [--ab-tree CHECKOUT] [--unix] [--base-unix] [--no-stream] [--py-spy DIR]
        [--relays app+aiohttp,lowlevel+aiohttp,httptools+aiohttp,app+http1,lowlevel+http1,httptools+http1]

One stand-in provider process (meshwarden.demo.model_provider), a registry, and one sidecar
whose signed bundle declares the stand-in in models.json (an allow-all policy, so Cedar still
decides every call). The client is this process, raw aiohttp (no SDK on either path, so the
difference is the gateway's alone):

  direct   client -> provider            POST /v1/chat/completions with the provider key
  relay    client -> bare aiohttp relay -> provider (benchmarks/http_relay.py): the floor of
           one Python HTTP hop, deciding nothing
  gateway  client -> sidecar -> provider  the same body, with the sidecar's API token

`--relays` runs more bare relays beside the first, each a path of its own (`relay:SERVER+CLIENT`):
the same relay on other HTTP machinery, agent side and provider side (http_relay.py lists them).

Measured at concurrency 1, the paths taking turns round by round (a noisy neighbour slows
both alike): non-streaming latency, and time to first token when streaming (from the request
to the first content chunk) and to the stream's end. The sidecar's CPU per gateway call is
its process's time on a CPU (every thread, /proc/PID/task/*/schedstat) over the gateway's rounds, less what it spent idle over the
same length of time (its background loops), divided by the calls.

`--ab-tree CHECKOUT` adds a second sidecar (path `base`) that imports meshwarden from another
checkout (`git archive COMMIT | tar -x -C DIR`), taking turns with the first in the same
rounds: a change measured against the code before it on the same loaded machine. `--unix`
puts the sidecar's gateway on a Unix socket (`--gateway-listen unix:PATH`) and its client on
it, `--base-unix` the base sidecar's (`--ab-tree .` with `--unix`: TCP against a Unix socket,
same code). `--py-spy DIR` records the sidecar's profile over the measured rounds (it slows the
sidecar: take CPU figures from a run without it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

try:
    import aiohttp

    from meshwarden.addresses import parse_host_port
    from meshwarden.identity.bootstrap import learn_registry_ca
    from meshwarden.policy_bundle.artifact import encode
    from meshwarden.policy_bundle.build import build
    from meshwarden.policy_bundle.init import init as write_starting_bundle
    from meshwarden.policy_bundle.keys import keygen, load_private_key
    from meshwarden.policy_bundle.sign import sign
    from meshwarden.registry_client import RegistryTrust, registry_channel, registry_stub
    from meshwarden.supervise import Child, meshwarden_argv, registry_health_tls, start
    from meshwarden.v1 import registry_pb2
except ModuleNotFoundError as exc:
    sys.exit(f"model_gateway.py: cannot import {exc.name}; run it with the project's venv and PYTHONPATH=<repo root>")

KEY = "sk-bench-" + "b" * 40
TOKEN = "bench-token-" + "t" * 32
BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "what is the status of my order " * 8}]}

Call = Callable[[], Awaitable[float]]  # one call; returns the time to first token (or 0)


def log(text: str) -> None:
    print(f"[model_gateway] {text}", file=sys.stderr, flush=True)


def cpu_s(pid: int) -> float:
    """CPU seconds of one process so far, every thread, in nanoseconds from /proc/PID/task/*/schedstat
    (/proc/PID/stat counts clock ticks: 10 ms, too coarse for a few hundred calls of ~500 µs)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def threads_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds so far of each thread of a process, by thread name (summed over equal names)."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return found


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent (every process, steal included), from /proc/stat."""
    fields = Path("/proc/stat").read_text().partition("\n")[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


async def push_bundle(registry: Child, data_dir: Path, artifact: bytes) -> None:
    """`meshwarden bundle push` as an operator would (CA pinned from the ready line)."""
    ready = registry.addresses
    learned = await asyncio.to_thread(learn_registry_ca, parse_host_port(ready["listen"]), pin=ready["ca_fingerprint"])
    token = (data_dir / "operator.token").read_text().strip()
    async with registry_channel(ready["listen"], RegistryTrust(ready["trust_domain"], learned.bundle_pem)) as channel:
        await registry_stub(channel).PushBundle(
            registry_pb2.PushBundleRequest(artifact=artifact),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )


def models_json(provider: str) -> str:
    return json.dumps(
        {
            "providers": {
                "bench": {"api": "openai", "base_url": f"http://{provider}/v1", "credential": {"env": "BENCH_KEY"}}
            },
            "models": {
                "bench-model": {
                    "provider": "bench",
                    "tier": "small",
                    "default_max_tokens": 64,
                    "max_output_tokens": 256,
                    "price_micro_usd_per_mtok": {"input": 150000, "output": 600000},
                }
            },
        }
    )


def bundle(directory: Path, provider: str) -> tuple[bytes, Path]:
    keys = keygen(directory / "signing", "bench")
    trusted = directory / "trusted"
    trusted.mkdir(parents=True)
    shutil.copy(keys.public_key, trusted / keys.public_key.name)
    source = directory / "source"
    write_starting_bundle(source)
    for policy in (source / "policies").glob("*.cedar"):
        policy.unlink()
    (source / "policies" / "allow-all.cedar").write_text('@id("allow-all")\npermit (principal, action, resource);\n')
    (source / "models.json").write_text(models_json(provider))
    return sign(encode(build(source).artifact), load_private_key(keys.private_key), "bench"), trusted


def caller(session: aiohttp.ClientSession, url: str, key: str, stream: bool) -> Call:
    payload = json.dumps({**BODY, "stream": stream, "max_tokens": 64}).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def call() -> float:
        started = time.perf_counter()
        first = 0.0
        async with session.post(url, data=payload, headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"{url} answered {response.status}: {(await response.text())[:300]}")
            if not stream:
                await response.read()
                return 0.0
            async for line in response.content:
                if not first and line.startswith(b"data:") and b'"content":"' in line and b'"content":""' not in line:
                    first = time.perf_counter() - started
        return first

    return call


async def start_sidecar(
    name: str, work: Path, registry: Child, trusted: Path, env: dict[str, str], unix: bool
) -> Child:
    gateway = f"unix:{work / name / 'gateway.sock'}" if unix else "127.0.0.1:0"
    (work / name).mkdir(parents=True, exist_ok=True)
    return await start(
        name,
        meshwarden_argv(
            *("sidecar", "run", "--agent", "bench-client", "--registry", registry.addresses["listen"]),
            *("--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0", "--admin-listen", "off"),
            *("--gateway-listen", gateway, "--data-dir", str(work / name / "data")),
            *("--bundle-keys", str(trusted), "--api-token-file", str(work / "token")),
        ),
        log_dir=work / "logs",
        env={"BENCH_KEY": KEY, **env},
    )


def gateway_session(sidecar: Child) -> tuple[aiohttp.ClientSession, str]:
    """A client session to a sidecar's gateway, and the base URL to post to."""
    address = sidecar.addresses["gateway"]
    if address.startswith("unix:"):
        return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=address[5:], limit=4)), "http://sidecar"
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4)), f"http://{address}"


def start_py_spy(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200"]
    return subprocess.Popen(
        [*argv, "--format", "raw", "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


async def measure(options: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="meshwarden-model-bench-"))
    logs = work / "logs"
    children: list[Child] = []
    sessions: list[aiohttp.ClientSession] = []
    try:
        provider = await start(
            "provider",
            [sys.executable, "-m", "meshwarden.demo.model_provider", "--key", KEY],
            log_dir=logs,
            health_address_key=None,
        )
        children.append(provider)
        registry = await start(
            "registry",
            meshwarden_argv(
                "registry",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "off",
                "--data-dir",
                str(work / "registry"),
            ),
            log_dir=logs,
            env={"MESHWARDEN_REGISTRY_ALLOW_UNVERIFIED_BUNDLES": "true"},  # older checkouts ignore it
            health_tls=registry_health_tls,
        )
        children.append(registry)
        artifact, trusted = await asyncio.to_thread(bundle, work / "policy", provider.addresses["listen"])
        await push_bundle(registry, work / "registry", artifact)
        (work / "token").write_text(TOKEN)
        (work / "token").chmod(0o600)
        sidecars = {"gateway": await start_sidecar("sidecar", work, registry, trusted, {}, options.unix)}
        children.append(sidecars["gateway"])
        if options.ab_tree:  # the same sidecar, importing meshwarden from the other checkout
            env = {"PYTHONSAFEPATH": "1", "PYTHONPATH": str(Path(options.ab_tree).resolve())}
            sidecars["base"] = await start_sidecar("sidecar-base", work, registry, trusted, env, options.base_unix)
            children.append(sidecars["base"])
        relays: dict[str, Child] = {}
        for variant in options.relays.split(","):
            server, _, client = variant.partition("+")
            name = "relay" if variant == "app+aiohttp" else f"relay:{variant}"
            relays[name] = await start(
                name.replace(":", "-").replace("+", "-"),
                [
                    sys.executable,
                    str(Path(__file__).with_name("http_relay.py")),
                    *("--upstream", f"http://{provider.addresses['listen']}", "--key", KEY),
                    *("--server", server, "--client", client or "aiohttp"),
                ],
                log_dir=logs,
                health_address_key=None,
            )
            children.append(relays[name])
        log(f"provider {provider.addresses['listen']}, sidecar gateway {sidecars['gateway'].addresses['gateway']}")
        plain = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4))
        sessions.append(plain)
        urls = {"direct": (plain, f"http://{provider.addresses['listen']}", KEY)}
        for name, relay in relays.items():
            urls[name] = (plain, f"http://{relay.addresses['listen']}", TOKEN)
        for name, sidecar in sidecars.items():
            session, base = gateway_session(sidecar)
            sessions.append(session)
            urls[name] = (session, base, TOKEN)
        streams = (False,) if options.no_stream else (False, True)
        paths = {
            (name, stream): caller(session, base + "/v1/chat/completions", key, stream)
            for stream in streams
            for name, (session, base, key) in urls.items()
        }
        for call in paths.values():  # warm up connections, the policy's caches, the spool
            for _ in range(20):
                await call()
        latencies: dict[tuple[str, bool], list[float]] = {k: [] for k in paths}
        ttft: dict[tuple[str, bool], list[float]] = {k: [] for k in paths}
        cpu_by_path: dict[tuple[str, bool], float] = dict.fromkeys(paths, 0.0)
        wall_by_sidecar: dict[str, float] = dict.fromkeys(sidecars, 0.0)
        per_round = max(1, options.calls // options.rounds)
        pids = {name: child.process.pid for name, child in sidecars.items()}
        for name, relay in relays.items():
            pids[name] = relay.process.pid
        spy = None
        if options.py_spy:
            options.py_spy.mkdir(parents=True, exist_ok=True)
            spy = start_py_spy(pids["gateway"], options.py_spy / "sidecar.txt", 3600)
            await asyncio.sleep(1.0)  # py-spy attaches
        busy_before = machine_busy_s()
        threads_before = threads_cpu_s(pids["gateway"])
        for round_ in range(options.rounds):
            order = list(paths.items())
            if round_ % 2:  # the two sidecars take turns going first
                order.reverse()
            for key, call in order:
                pid = pids.get(key[0])
                cpu_before = cpu_s(pid) if pid else 0.0
                wall_before = time.perf_counter()
                for _ in range(per_round):
                    started = time.perf_counter()
                    first = await call()
                    latencies[key].append(time.perf_counter() - started)
                    if first:
                        ttft[key].append(first)
                if pid:
                    cpu_by_path[key] += cpu_s(pid) - cpu_before
                if key[0] in wall_by_sidecar:
                    wall_by_sidecar[key[0]] += time.perf_counter() - wall_before
        busy_s = machine_busy_s() - busy_before
        if spy is not None:
            spy.send_signal(2)  # SIGINT: py-spy writes what it recorded
            _, err = await asyncio.to_thread(spy.communicate)
            log(f"py-spy: {err.decode(errors='replace')[-300:].strip()}")
        threads_after = threads_cpu_s(pids["gateway"])
        calls_per_sidecar = per_round * options.rounds * len(streams)
        by_thread = {
            name: round((spent - threads_before.get(name, 0.0)) / calls_per_sidecar * 1e6, 1)
            for name, spent in threads_after.items()
            if spent - threads_before.get(name, 0.0) > 0
        }
        idle_cpu_s: dict[str, float] = {}
        idle_wait_s = min(max(wall_by_sidecar.values()), 10.0)
        idle_before = {name: cpu_s(pids[name]) for name in sidecars}
        await asyncio.sleep(idle_wait_s)
        for name in sidecars:
            idle_cpu_s[name] = (cpu_s(pids[name]) - idle_before[name]) * wall_by_sidecar[name] / max(idle_wait_s, 1e-9)
    finally:
        for session in sessions:
            await session.close()
        for child in reversed(children):
            await child.stop()

    def figures(values: list[float]) -> dict[str, float]:
        return {
            "p50_ms": round(statistics.median(values) * 1000, 3),
            "p90_ms": round(percentile(values, 90) * 1000, 3),
            "p99_ms": round(percentile(values, 99) * 1000, 3),
        }

    calls = per_round * options.rounds
    names = list(urls)
    kinds = {"non_streaming": False, "streaming": True}
    kinds = {label: stream for label, stream in kinds.items() if stream in streams}
    # idle work is spread over both kinds of call by their share of the calls (equal here)
    cpu = {
        name: {
            label: round((cpu_by_path[(name, stream)] - idle_cpu_s.get(name, 0.0) / len(streams)) / calls * 1e6, 1)
            for label, stream in kinds.items()
        }
        for name in [*sidecars, *relays]
    }
    result: dict[str, object] = {
        "calls_per_path": calls,
        "gateway_transport": {
            "gateway": "unix socket" if options.unix else "tcp loopback",
            **({"base": "unix socket" if options.base_unix else "tcp loopback"} if options.ab_tree else {}),
        },
        "non_streaming": {p: figures(latencies[(p, False)]) for p in names},
        "cpu_us_per_call": cpu,
        "sidecar_idle_cpu_us_per_call": {n: round(idle_cpu_s[n] / calls_per_sidecar * 1e6, 1) for n in sidecars},
        "sidecar_cpu_us_per_call_by_thread": by_thread,
        "machine_busy_s_meanwhile": round(busy_s, 1),
    }
    if True in streams:
        result["streaming_total"] = {p: figures(latencies[(p, True)]) for p in names}
        result["streaming_ttft"] = {p: figures(ttft[(p, True)]) for p in names}

    def added(path: str, stream: bool, over: str, data: dict[tuple[str, bool], list[float]]) -> float:
        return round((statistics.median(data[(path, stream)]) - statistics.median(data[(over, stream)])) * 1000, 3)

    result["added_p50_ms"] = {
        f"{name}_over_{over}": {
            "non_streaming": added(name, False, over, latencies),
            **({"ttft": added(name, True, over, ttft)} if True in streams else {}),
        }
        for name in [*sidecars, *relays]
        for over in ("direct", "relay")
        if name != over and over in urls
    }
    shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="calls per path (default 1000)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    parser.add_argument("--ab-tree", default="", help="a checkout: a second sidecar (path `base`) runs its code")
    parser.add_argument("--unix", action="store_true", help="the sidecar's gateway on a Unix socket")
    parser.add_argument("--base-unix", action="store_true", help="the base sidecar's gateway on a Unix socket")
    parser.add_argument(
        "--relays",
        default="app+aiohttp",
        help="bare relays to run, comma-separated SERVER+CLIENT (app|lowlevel|httptools + aiohttp|http1; "
        "default app+aiohttp, the path named `relay`)",
    )
    parser.add_argument("--no-stream", action="store_true", help="non-streamed calls only")
    parser.add_argument("--py-spy", type=Path, default=None, help="record the sidecar with py-spy into this directory")
    options = parser.parse_args()
    result = asyncio.run(measure(options))
    if options.output == "json":
        print(json.dumps(result, indent=2))
        return 0
    log(f"{result['calls_per_path']} calls per path, concurrency 1, interleaved rounds, {result['gateway_transport']}")
    for section in ("non_streaming", "streaming_ttft", "streaming_total"):
        for path, values in result.get(section, {}).items():  # type: ignore[attr-defined]
            print(
                f"{section:<16} {path:<26} p50 {values['p50_ms']:>8.3f} ms  p90 {values['p90_ms']:>8.3f} ms  p99 {values['p99_ms']:>8.3f} ms"
            )
    print(f"added p50 (ms): {result['added_p50_ms']}")
    print(f"CPU per call (µs, idle work subtracted): {result['cpu_us_per_call']}")
    print(
        f"sidecar CPU per call by thread (µs, every kind of call): {result['sidecar_cpu_us_per_call_by_thread']}; "
        f"idle work per call (µs): {result['sidecar_idle_cpu_us_per_call']}; "
        f"machine busy meanwhile (other processes): {result['machine_busy_s_meanwhile']} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
