"""Latency of calls through the mesh while 1,000-policy bundles are pushed to it.

    PYTHONPATH=. .venv/bin/python benchmarks/bundle_push_p99.py [--quiet-calls 1500] [--pushes 4]
        [--concurrency 1] [--gap-s 1.0] [--output table|json]

A real registry, two real sidecars (frontdesk calls echo) and the echo agent
(examples/echo_agent.py), each its own process. The bundle is the one of
benchmarks/policy_decisions.py (1,000 policies, 400 agents, 300 capabilities) plus the two
agents of this mesh and one policy that permits their calls, so both sidecars evaluate it on
every call. One client calls `echo` at concurrency 1 with nothing else happening (quiet), then at
`--concurrency` (default 1) while `--pushes` new revisions are pushed, one after the other, each once both
sidecars enforce the previous one, `--gap-s` apart (pushes). Each sidecar verifies and builds
every revision (hundreds of ms of CPU for this bundle); what this measures is how much of that
the calls in flight feel.

Before and after a change: run the same script with PYTHONPATH pointing at each checkout (it
uses only APIs both have). The sidecars' event loop lag during the pushes (from the
meshwarden_event_loop_lag_seconds histogram on their admin port: samples later than 10 ms and
100 ms) is reported where the sidecar exports it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
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
    from policy_decisions import generate_bundle
except ModuleNotFoundError as exc:  # run from a checkout without PYTHONPATH
    sys.exit(f"bundle_push_p99.py: cannot import {exc.name}; run it with the project's venv and PYTHONPATH=<repo root>")

ECHO = Path(__file__).parents[1] / "examples" / "echo_agent.py"
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


async def metric(http: aiohttp.ClientSession, sidecar: Child, name: str) -> float | None:
    async with http.get(f"http://{sidecar.addresses['admin']}/metrics") as response:
        found = re.search(rf"^{name} (\S+)$", await response.text(), re.M)
    return float(found.group(1)) if found else None


async def lag_buckets(http: aiohttp.ClientSession, sidecar: Child) -> dict[str, float]:
    """The sidecar's event loop lag histogram (cumulative counts by upper bound); {} when the
    sidecar does not export it."""
    async with http.get(f"http://{sidecar.addresses['admin']}/metrics") as response:
        text = await response.text()
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


async def wait_revision(http: aiohttp.ClientSession, sidecars: Sequence[Child], revision: int) -> float:
    started = time.perf_counter()
    while True:
        seen = [await metric(http, s, "meshwarden_sidecar_bundle_revision") for s in sidecars]
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


async def run(args: argparse.Namespace, work: Path) -> dict[str, object]:
    trusted, artifacts = await asyncio.to_thread(make_bundles, work, 1 + args.pushes)
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
            lag_before = [await lag_buckets(http, s) for s in sidecars]
            during: list[float] = []
            activations: list[float] = []
            pushing = True

            async def calls() -> None:
                while pushing:
                    await call_once(client, during, failures)

            callers = [asyncio.create_task(calls()) for _ in range(args.concurrency)]
            for artifact in artifacts[1:]:
                revision = await push(registry, registry_dir, artifact)
                activations.append(await wait_revision(http, sidecars, revision))
                await asyncio.sleep(args.gap_s)
            pushing = False
            await asyncio.gather(*callers)
            lag = [lag_over(b, await lag_buckets(http, s)) for b, s in zip(lag_before, sidecars, strict=True)]
    finally:
        for child in reversed(children):
            await child.stop()
    return {
        "quiet": figures(quiet),
        "pushes": figures(during),
        "revisions_pushed": args.pushes,
        "concurrency": args.concurrency,
        "activation_s": [round(a, 2) for a in activations],
        "sidecar_loop_lag_during_pushes": lag,
        "failures": len(failures),
        "first_failure": failures[0] if failures else "",
        "meshwarden": str(Path(sys.modules["meshwarden"].__file__ or "").parent),
        "loadavg": os.getloadavg()[0],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quiet-calls", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--pushes", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=1, help="callers in flight while the bundles are pushed")
    parser.add_argument("--gap-s", type=float, default=1.0, help="pause after each revision is active everywhere")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bundle-push-") as work:
        result = asyncio.run(run(args, Path(work)))
    if args.output == "json":
        print(json.dumps(result, indent=2))
    else:
        for phase in ("quiet", "pushes"):
            print(f"{phase:<7} {result[phase]}")
        for key in ("activation_s", "sidecar_loop_lag_during_pushes", "failures", "meshwarden", "loadavg"):
            print(f"{key}: {result[key]}")
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
