"""What the model gateway adds to a model call: latency and sidecar CPU per call, against
calling the provider directly, in the same run.

    PYTHONPATH=. .venv/bin/python benchmarks/model_gateway.py [--calls 1000] [--rounds 10] [--output json]

One stand-in provider process (meshwarden.demo.model_provider), a registry, and one sidecar
whose signed bundle declares the stand-in in models.json (an allow-all policy, so Cedar still
decides every call). The client is this process, raw aiohttp (no SDK on either path, so the
difference is the gateway's alone):

  direct   client -> provider            POST /v1/chat/completions with the provider key
  relay    client -> bare aiohttp relay -> provider (benchmarks/http_relay.py): the floor of
           one Python HTTP hop, deciding nothing
  gateway  client -> sidecar -> provider  the same body, with the sidecar's API token

Measured at concurrency 1, the paths taking turns round by round (a noisy neighbour slows
both alike): non-streaming latency, and time to first token when streaming (from the request
to the first content chunk) and to the stream's end. The sidecar's CPU per gateway call is
its process's user+system time over the gateway's rounds, less what it spent idle over the
same length of time (its background loops), divided by the calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
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
    """User + system CPU seconds of one process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


async def measure(options: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="meshwarden-model-bench-"))
    logs = work / "logs"
    children: list[Child] = []
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
        profile = ["-m", "cProfile", "-o", str(options.profile)] if options.profile else []
        sidecar = await start(
            "sidecar",
            [
                sys.executable,
                *profile,
                *meshwarden_argv(
                    *("sidecar", "run", "--agent", "bench-client", "--registry", registry.addresses["listen"]),
                    *("--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0", "--admin-listen", "off"),
                    *("--gateway-listen", "127.0.0.1:0", "--data-dir", str(work / "sidecar")),
                    *("--bundle-keys", str(trusted), "--api-token-file", str(work / "token")),
                )[1:],
            ],
            log_dir=logs,
            env={"BENCH_KEY": KEY},
        )
        children.append(sidecar)
        relay = await start(
            "relay",
            [
                sys.executable,
                str(Path(__file__).with_name("http_relay.py")),
                *("--upstream", f"http://{provider.addresses['listen']}", "--key", KEY),
            ],
            log_dir=logs,
            health_address_key=None,
        )
        children.append(relay)
        log(f"provider {provider.addresses['listen']}, sidecar gateway {sidecar.addresses['gateway']}")
        direct_url = f"http://{provider.addresses['listen']}/v1/chat/completions"
        gateway_url = f"http://{sidecar.addresses['gateway']}/v1/chat/completions"
        relay_url = f"http://{relay.addresses['listen']}/v1/chat/completions"
        connector = aiohttp.TCPConnector(limit=4)
        async with aiohttp.ClientSession(connector=connector) as session:
            paths = {
                ("direct", False): caller(session, direct_url, KEY, False),
                ("relay", False): caller(session, relay_url, TOKEN, False),
                ("gateway", False): caller(session, gateway_url, TOKEN, False),
                ("direct", True): caller(session, direct_url, KEY, True),
                ("relay", True): caller(session, relay_url, TOKEN, True),
                ("gateway", True): caller(session, gateway_url, TOKEN, True),
            }
            for call in paths.values():  # warm up connections, the policy's caches, the spool
                for _ in range(20):
                    await call()
            latencies: dict[tuple[str, bool], list[float]] = {k: [] for k in paths}
            ttft: dict[tuple[str, bool], list[float]] = {k: [] for k in paths}
            cpu_by_path: dict[bool, float] = {False: 0.0, True: 0.0}
            relay_cpu: dict[bool, float] = {False: 0.0, True: 0.0}
            gateway_calls, gateway_wall_s = 0, 0.0
            busy_before = machine_busy_s()
            threads_before = threads_cpu_s(sidecar.process.pid)
            per_round = max(1, options.calls // options.rounds)
            pid = sidecar.process.pid
            for _ in range(options.rounds):
                for key, call in paths.items():
                    cpu_before = cpu_s(pid)
                    relay_before = cpu_s(relay.process.pid)
                    wall_before = time.perf_counter()
                    for _ in range(per_round):
                        started = time.perf_counter()
                        first = await call()
                        latencies[key].append(time.perf_counter() - started)
                        if first:
                            ttft[key].append(first)
                    if key[0] == "relay":
                        relay_cpu[key[1]] += cpu_s(relay.process.pid) - relay_before
                    if key[0] == "gateway":
                        cpu_by_path[key[1]] += cpu_s(pid) - cpu_before
                        gateway_calls += per_round
                        gateway_wall_s += time.perf_counter() - wall_before
            busy_s = machine_busy_s() - busy_before
            threads_after = threads_cpu_s(pid)
            by_thread = {
                name: round((spent - threads_before.get(name, 0.0)) / gateway_calls * 1e6, 1)
                for name, spent in threads_after.items()
                if spent - threads_before.get(name, 0.0) > 0
            }
            idle_wait_s = min(gateway_wall_s, 10.0)
            idle_before = cpu_s(pid)
            await asyncio.sleep(idle_wait_s)
            idle_cpu_s = (cpu_s(pid) - idle_before) * gateway_wall_s / max(idle_wait_s, 1e-9)
    finally:
        for child in reversed(children):
            await child.stop()

    def figures(values: list[float]) -> dict[str, float]:
        return {
            "p50_ms": round(statistics.median(values) * 1000, 3),
            "p90_ms": round(percentile(values, 90) * 1000, 3),
            "p99_ms": round(percentile(values, 99) * 1000, 3),
        }

    result: dict[str, object] = {
        "calls_per_path": per_round * options.rounds,
        "non_streaming": {p: figures(latencies[(p, False)]) for p in ("direct", "relay", "gateway")},
        "streaming_total": {p: figures(latencies[(p, True)]) for p in ("direct", "relay", "gateway")},
        "streaming_ttft": {p: figures(ttft[(p, True)]) for p in ("direct", "relay", "gateway")},
        "relay_cpu_us_per_call": {
            "non_streaming": round(relay_cpu[False] / (gateway_calls / 2) * 1e6, 1),
            "streaming": round(relay_cpu[True] / (gateway_calls / 2) * 1e6, 1),
        },
        # idle work is spread over both kinds of call by their share of the calls (equal here)
        "sidecar_cpu_us_per_call": {
            "non_streaming": round((cpu_by_path[False] - idle_cpu_s / 2) / (gateway_calls / 2) * 1e6, 1),
            "streaming": round((cpu_by_path[True] - idle_cpu_s / 2) / (gateway_calls / 2) * 1e6, 1),
        },
        "sidecar_idle_cpu_us_per_call": round(idle_cpu_s / gateway_calls * 1e6, 1),
        "sidecar_cpu_us_per_call_by_thread": by_thread,
        "machine_busy_s_meanwhile": round(busy_s, 1),
    }
    added = {
        "non_streaming_p50_ms": round(
            statistics.median(latencies[("gateway", False)]) - statistics.median(latencies[("direct", False)]), 6
        )
        * 1000,
        "ttft_p50_ms": round(statistics.median(ttft[("gateway", True)]) - statistics.median(ttft[("direct", True)]), 6)
        * 1000,
        "non_streaming_p50_ms_over_relay": round(
            statistics.median(latencies[("gateway", False)]) - statistics.median(latencies[("relay", False)]), 6
        )
        * 1000,
    }
    result["added_by_gateway"] = {k: round(v, 3) for k, v in added.items()}
    shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="calls per path (default 1000)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    parser.add_argument("--profile", type=Path, default=None, help="run the sidecar under cProfile, writing here")
    options = parser.parse_args()
    result = asyncio.run(measure(options))
    if options.output == "json":
        print(json.dumps(result, indent=2))
        return 0
    log(f"{result['calls_per_path']} calls per path, concurrency 1, interleaved rounds")
    for section in ("non_streaming", "streaming_ttft", "streaming_total"):
        for path, values in result[section].items():  # type: ignore[attr-defined]
            print(
                f"{section:<16} {path:<8} p50 {values['p50_ms']:>8.3f} ms  p90 {values['p90_ms']:>8.3f} ms  p99 {values['p99_ms']:>8.3f} ms"
            )
    print(f"added by the gateway: {result['added_by_gateway']}")
    print(
        f"sidecar CPU per gateway call by thread (µs, both kinds of call): {result['sidecar_cpu_us_per_call_by_thread']}"
    )
    print(
        f"sidecar CPU per gateway call (µs): {result['sidecar_cpu_us_per_call']} "
        f"(idle work subtracted: {result['sidecar_idle_cpu_us_per_call']} µs a call); "
        f"bare relay's CPU per call (µs): {result['relay_cpu_us_per_call']}; "
        f"machine busy meanwhile (other processes): {result['machine_busy_s_meanwhile']} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
