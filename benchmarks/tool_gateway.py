"""What the sidecar's MCP gateway adds to a tool call: latency and sidecar CPU per `tools/call`,
against calling the same MCP server directly, in the same run.

    PYTHONPATH=. .venv/bin/python benchmarks/tool_gateway.py [--calls 400] [--rounds 4] [--output table|json]

Starts a real registry, the demo's ticket MCP server (official `mcp` package, streamable HTTP,
JSON responses, stateless) and a real sidecar whose signed bundle declares that server and
permits `tickets.read_ticket` (Cedar decides every call; receipts on). One client process (this
one) holds two official `mcp` clients (protocol 2026-07-28): one to the server, one to the
sidecar's /mcp. It alternates `--rounds` blocks of `--calls` sequential calls (concurrency 1)
on each path, so drift in the machine's load hits both alike. Reported per path: p50, p90,
p99 and mean latency of `call_tool` as the client sees it; and, for the sidecar path, the
sidecar's CPU (user + system, from /proc) per call. Added latency = sidecar p50 - direct p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

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

BUNDLE_KEY_ID = "bench"

READ_TICKET_SHA256 = "c8580a70a2c52497b83c5c9433f548e4bd4fa6d77f7abe377afc7baa4e8d20e3"
TOOL_SCHEMA = """
entity Tool { server: String, name: String, risk: String };
action "CallTool" appliesTo { principal: [Agent], resource: [Tool], context: { session_id: String } };
"""
POLICY = """@id("read-tools")
permit (principal, action == Action::"CallTool", resource) when { resource.risk == "read" };
"""


def log(text: str) -> None:
    print(f"[tool_gateway] {text}", file=sys.stderr, flush=True)


async def push_bundle(registry: Child, data_dir: Path, artifact: bytes) -> None:
    """`meshwarden bundle push` as an operator (CA pinned from the ready line, operator token)."""
    ready = registry.addresses
    learned = await asyncio.to_thread(learn_registry_ca, parse_host_port(ready["listen"]), pin=ready["ca_fingerprint"])
    token = (data_dir / "operator.token").read_text().strip()
    async with registry_channel(ready["listen"], RegistryTrust(ready["trust_domain"], learned.bundle_pem)) as channel:
        await registry_stub(channel).PushBundle(
            registry_pb2.PushBundleRequest(artifact=artifact),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tool_bundle(directory: Path, server_url: str) -> tuple[bytes, Path]:
    keys = keygen(directory / "signing", BUNDLE_KEY_ID)
    trusted = directory / "trusted"
    trusted.mkdir(parents=True)
    (trusted / keys.public_key.name).write_bytes(keys.public_key.read_bytes())
    source = directory / "source"
    write_starting_bundle(source)
    for policy in (source / "policies").glob("*.cedar"):
        policy.unlink()
    (source / "policies" / "tools.cedar").write_text(POLICY)
    (source / "schema.cedarschema").write_text((source / "schema.cedarschema").read_text() + TOOL_SCHEMA)
    (source / "mcp_servers.toml").write_text(
        f'[servers.tickets]\nurl = "{server_url}"\n[servers.tickets.tools.read_ticket]\n'
        f'risk = "read"\ninput_schema_sha256 = "{READ_TICKET_SHA256}"\n'
    )
    return sign(encode(build(source).artifact), load_private_key(keys.private_key), BUNDLE_KEY_ID), trusted


async def start_tickets() -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "meshwarden.demo.tickets_mcp", "--http", "0", stdout=asyncio.subprocess.PIPE
    )
    line = (await process.stdout.readline()).decode() if process.stdout is not None else ""
    if not line.startswith("ready "):
        process.kill()
        raise SystemExit(f"the ticket MCP server did not start: {line!r}")
    return process, line.split()[1]


def client(url: str, token: str = "") -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Client(streamable_http_client(url, http_client=create_mcp_http_client(headers=headers)))


async def timed_calls(call: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    children: list[Child] = []
    tickets: asyncio.subprocess.Process | None = None
    try:
        registry_dir = work / "registry"
        registry = await start(
            "registry",
            meshwarden_argv(
                "registry", "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                "--data-dir", str(registry_dir),
            ),
            log_dir=work / "logs",
            env={"MESHWARDEN_REGISTRY_ALLOW_UNVERIFIED_BUNDLES": "true"},  # older checkouts ignore it
            health_tls=registry_health_tls,
        )  # fmt: skip
        children.append(registry)
        tickets, tickets_url = await start_tickets()
        artifact, trusted = await asyncio.to_thread(tool_bundle, work / "policy", tickets_url)
        await push_bundle(registry, registry_dir, artifact)
        token_file = work / "agent-token"
        token_file.write_text("bench-agent-token-" + "x" * 30)
        token_file.chmod(0o600)
        sidecar = await start(
            "sidecar",
            meshwarden_argv(
                *("sidecar", "run", "--agent", "support", "--registry", registry.addresses["listen"]),
                *("--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"),
                *("--gateway-listen", "127.0.0.1:0", "--data-dir", str(work / "sidecar")),
                *("--bundle-keys", str(trusted), "--api-token-file", str(token_file)),
            ),
            log_dir=work / "logs",
        )
        children.append(sidecar)
        gateway = f"http://{sidecar.addresses['gateway']}/mcp"
        log(f"MCP server {tickets_url}, sidecar gateway {gateway}")
        direct: list[float] = []
        through: list[float] = []
        sidecar_cpu_s = 0.0
        async with client(tickets_url) as to_server, client(gateway, token_file.read_text()) as to_sidecar:
            for c, name in ((to_server, "read_ticket"), (to_sidecar, "tickets.read_ticket")):  # warm up both paths
                for _ in range(50):
                    await c.call_tool(name, {"ticket_id": 1001})
            for round_ in range(args.rounds):
                direct += await timed_calls(lambda: to_server.call_tool("read_ticket", {"ticket_id": 1001}), args.calls)
                before = cpu_s(sidecar.process.pid)
                through += await timed_calls(
                    lambda: to_sidecar.call_tool("tickets.read_ticket", {"ticket_id": 1001}), args.calls
                )
                sidecar_cpu_s += cpu_s(sidecar.process.pid) - before
                log(f"round {round_ + 1}/{args.rounds}: direct p50 {statistics.median(direct):.2f} ms, "
                    f"through the sidecar p50 {statistics.median(through):.2f} ms")  # fmt: skip
    finally:
        for child in reversed(children):
            await child.stop()
        if tickets is not None and tickets.returncode is None:
            tickets.terminate()
            await tickets.wait()
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "calls_per_path": len(direct),
        "direct_ms": summary(direct),
        "sidecar_ms": summary(through),
        "added_p50_ms": round(statistics.median(through) - statistics.median(direct), 3),
        "sidecar_cpu_ms_per_call": round(sidecar_cpu_s * 1000 / len(through), 3),
    }


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(samples), 3),
        "p90": round(percentile(samples, 90), 3),
        "p99": round(percentile(samples, 99), 3),
        "mean": round(statistics.fmean(samples), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="sequential calls per block and path (default 400)")
    parser.add_argument("--rounds", type=int, default=4, help="blocks per path, alternating (default 4)")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meshwarden-tool-bench-") as work:
        result = asyncio.run(run(args, Path(work)))
    if args.output == "json":
        print(json.dumps(result, indent=2))
        return
    print(f"{result['machine']}; {result['calls_per_path']} calls per path, concurrency 1")
    print(f"{'path':<22} {'p50':>8} {'p90':>8} {'p99':>8} {'mean':>8}  (ms)")
    for label, key in (("MCP server directly", "direct_ms"), ("through the sidecar", "sidecar_ms")):
        row = result[key]
        print(f"{label:<22} {row['p50']:>8.3f} {row['p90']:>8.3f} {row['p99']:>8.3f} {row['mean']:>8.3f}")
    print(
        f"added p50: {result['added_p50_ms']:.3f} ms; sidecar CPU per call: {result['sidecar_cpu_ms_per_call']:.3f} ms"
    )


if __name__ == "__main__":
    main()
