"""What the sidecar's MCP gateway adds to a tool call: latency and sidecar CPU per `tools/call`,
against calling the same MCP server directly, in the same run.

    PYTHONPATH=. .venv/bin/python benchmarks/tool_gateway.py [--calls 400] [--rounds 4] [--output table|json]
        [--ab-tree CHECKOUT] [--unix] [--base-unix] [--oauth] [--py-spy DIR]

Starts a real registry, the demo's ticket MCP server (official `mcp` package, streamable HTTP,
JSON responses, stateless) and a real sidecar whose signed bundle declares that server and
permits `tickets.read_ticket` (Cedar decides every call; receipts on). One client process (this
one) holds two official `mcp` clients (protocol 2026-07-28): one to the server, one to the
sidecar's /mcp. It alternates `--rounds` blocks of `--calls` sequential calls (concurrency 1)
on each path, so drift in the machine's load hits both alike. Reported per path: p50, p90,
p99 and mean latency of `call_tool` as the client sees it; and, for the sidecar path, the
sidecar's CPU per call (time on a CPU, every thread, from /proc/PID/task/*/schedstat, in ns),
less what it spends idle over as long (its background loops: at ~50 ms a call, not small).
Added latency = sidecar p50 - direct p50.

`--ab-tree CHECKOUT` adds a second sidecar (`base`) importing meshwarden from another checkout
(`git archive COMMIT | tar -x -C DIR`), taking turns with the first in the same rounds: a change
against the code before it, on the same loaded machine. `--unix` puts the sidecar's gateway on a
Unix socket (`--gateway-listen unix:PATH`), the agent's client reaching it through an httpx
transport with `uds=`; `--base-unix` the base sidecar's (`--ab-tree .` with `--unix`: TCP against
a Unix socket, same code). `--oauth` puts the server behind OAuth client credentials (the tests'
authorization server stand-in and their ticket server, which introspects each token at it): only
the sidecars hold a token, so there is no direct path, and "added" is against the base sidecar
(or nothing). `--py-spy DIR` records the sidecar over the measured rounds (1,000 samples a
second, without pausing it; the samples are wall clock, so a `send()` that wakes its receiver
shows up as time spent there; it still slows the sidecar: take CPU figures from a run without it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
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
TESTS = Path(__file__).resolve().parents[1] / "tests" / "integration"  # the OAuth stand-ins (--oauth)
OAUTH_CLIENT = "bench-client"
OAUTH_SECRET = "bench-oauth-secret-" + "s" * 24

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
    """CPU seconds of a process so far, every thread, from schedstat (ns; /proc/PID/stat counts 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def tool_bundle(directory: Path, server_url: str, oauth_issuer: str = "") -> tuple[bytes, Path]:
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
    credential = (
        f'credential = {{ name = "tickets-oauth", scheme = "oauth_client_credentials", issuer = "{oauth_issuer}", '
        f'client_id = "{OAUTH_CLIENT}", scope = "tickets.read" }}\n'
        if oauth_issuer
        else ""
    )
    (source / "mcp_servers.toml").write_text(
        f'[servers.tickets]\nurl = "{server_url}"\n{credential}[servers.tickets.tools.read_ticket]\n'
        f'risk = "read"\ninput_schema_sha256 = "{READ_TICKET_SHA256}"\n'
    )
    return sign(encode(build(source).artifact), load_private_key(keys.private_key), BUNDLE_KEY_ID), trusted


async def start_ready(argv: list[str], what: str) -> tuple[asyncio.subprocess.Process, str]:
    """A process that prints `ready URL` once it serves; the URL."""
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    line = (await process.stdout.readline()).decode() if process.stdout is not None else ""
    if not line.startswith("ready "):
        process.kill()
        raise SystemExit(f"{what} did not start: {line!r}")
    return process, line.split()[1]


async def start_tickets() -> tuple[asyncio.subprocess.Process, str]:
    return await start_ready(
        [sys.executable, "-m", "meshwarden.demo.tickets_mcp", "--http", "0"], "the ticket MCP server"
    )


async def start_oauth(work: Path) -> tuple[list[asyncio.subprocess.Process], str, str]:
    """The tests' OAuth authorization server stand-in and their ticket server protected by it
    (tokens introspected at the issuer on every request); (processes, issuer, server URL)."""
    secret = work / "oauth-client-secret"
    secret.write_text(OAUTH_SECRET)
    token_server, issuer = await start_ready(
        [sys.executable, str(TESTS / "oauth_token_server.py"), "--client-id", OAUTH_CLIENT]
        + ["--client-secret-file", str(secret), "--scope", "tickets.read", "--log", str(work / "oauth.log")],
        "the OAuth server stand-in",
    )
    tickets, url = await start_ready(
        [sys.executable, str(TESTS / "mcp_servers" / "tickets_server.py"), "--http", "0"]
        + ["--oauth-issuer", issuer, "--oauth-scope", "tickets.read"],
        "the OAuth-protected ticket server",
    )
    return [token_server, tickets], issuer, url


def client(url: str, token: str = "", uds: str = "") -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = create_mcp_http_client(headers=headers)
    if uds:  # the agent's hop over the sidecar's Unix socket; the URL's host is then only a name
        http = httpx2.AsyncClient(headers=headers, timeout=http.timeout, transport=httpx2.AsyncHTTPTransport(uds=uds))
    return Client(streamable_http_client(url, http_client=http))


async def start_sidecar(
    name: str, work: Path, registry: Child, trusted: Path, env: dict[str, str], unix: bool
) -> Child:
    gateway = f"unix:{work / name}.sock" if unix else "127.0.0.1:0"
    return await start(
        name,
        meshwarden_argv(
            *("sidecar", "run", "--agent", "support", "--registry", registry.addresses["listen"]),
            *("--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"),
            *("--gateway-listen", gateway, "--data-dir", str(work / name)),
            *("--bundle-keys", str(trusted), "--api-token-file", str(work / "agent-token")),
            *("--tool-credentials-dir", str(work / "tool-credentials")),
        ),
        log_dir=work / "logs",
        env=env,
    )


def threads_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds so far of each thread of a process, by thread name (summed over equal names)."""
    found: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            spent = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, IndexError, ValueError):
            continue
        found[name] = found.get(name, 0.0) + spent
    return found


def sidecar_client(sidecar: Child, token: str) -> Client:
    address = sidecar.addresses["gateway"]
    if address.startswith("unix:"):
        return client("http://sidecar/mcp", token, uds=address[5:])
    return client(f"http://{address}/mcp", token)


def start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--rate",
        "1000",
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def timed_calls(call: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    children: list[Child] = []
    servers: list[asyncio.subprocess.Process] = []
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
        issuer = ""
        if args.oauth:
            servers, issuer, tickets_url = await start_oauth(work)
        else:
            tickets, tickets_url = await start_tickets()
            servers = [tickets]
        artifact, trusted = await asyncio.to_thread(tool_bundle, work / "policy", tickets_url, issuer)
        await push_bundle(registry, registry_dir, artifact)
        token_file = work / "agent-token"
        token_file.write_text("bench-agent-token-" + "x" * 30)
        token_file.chmod(0o600)
        token = token_file.read_text()
        credentials = work / "tool-credentials"
        credentials.mkdir(mode=0o700)
        (credentials / "tickets-oauth").write_text(OAUTH_SECRET)  # the client secret, for --oauth
        (credentials / "tickets-oauth").chmod(0o600)
        sidecars = {"sidecar": await start_sidecar("sidecar", work, registry, trusted, {}, args.unix)}
        children.append(sidecars["sidecar"])
        if args.ab_tree:  # the same sidecar, importing meshwarden from the other checkout
            env = {"PYTHONSAFEPATH": "1", "PYTHONPATH": str(Path(args.ab_tree).resolve())}
            sidecars["base"] = await start_sidecar("sidecar-base", work, registry, trusted, env, args.base_unix)
            children.append(sidecars["base"])
        log(f"MCP server {tickets_url}, sidecar gateway {sidecars['sidecar'].addresses['gateway']}")
        paths = list(sidecars) if args.oauth else ["direct", *sidecars]  # behind OAuth: only the sidecars hold a token
        samples: dict[str, list[float]] = {name: [] for name in paths}
        spent_s = dict.fromkeys(sidecars, 0.0)
        wall_s = dict.fromkeys(sidecars, 0.0)
        async with contextlib.AsyncExitStack() as stack:
            clients = {} if args.oauth else {"direct": await stack.enter_async_context(client(tickets_url))}
            for name, sidecar in sidecars.items():
                clients[name] = await stack.enter_async_context(sidecar_client(sidecar, token))
            tools = {name: "tickets.read_ticket" for name in sidecars} | {"direct": "read_ticket"}
            for name, c in clients.items():  # warm up every path
                for _ in range(50):
                    await c.call_tool(tools[name], {"ticket_id": 1001})
            threads_before = threads_cpu_s(sidecars["sidecar"].process.pid)
            spy = start_py_spy(sidecars["sidecar"].process.pid, args.py_spy / "sidecar.txt") if args.py_spy else None
            for round_ in range(args.rounds):
                order = list(clients) if round_ % 2 == 0 else list(reversed(clients))
                for name in order:
                    c, tool = clients[name], tools[name]
                    pid = sidecars[name].process.pid if name in sidecars else 0
                    before, started = cpu_s(pid) if pid else 0.0, time.perf_counter()
                    samples[name] += await timed_calls(
                        functools.partial(c.call_tool, tool, {"ticket_id": 1001}), args.calls
                    )
                    if pid:
                        spent_s[name] += cpu_s(pid) - before
                        wall_s[name] += time.perf_counter() - started
                log(f"round {round_ + 1}/{args.rounds}: " + ", ".join(
                    f"{name} p50 {statistics.median(values):.2f} ms" for name, values in samples.items()
                ))  # fmt: skip
            if spy is not None:
                spy.send_signal(2)  # SIGINT: py-spy writes what it recorded
                await asyncio.to_thread(spy.communicate)
        threads_after = threads_cpu_s(sidecars["sidecar"].process.pid)
        by_thread = {
            name: round((spent - threads_before.get(name, 0.0)) * 1000 / len(samples["sidecar"]), 3)
            for name, spent in threads_after.items()
            if spent - threads_before.get(name, 0.0) > 0
        }
        # What each sidecar spends idle (its background loops: leases, receipt shipping, health) over
        # as long as its calls took, subtracted: at ~50 ms a call it is not small.
        idle_s = min(max(wall_s.values()), 10.0)
        before_idle = {name: cpu_s(sidecar.process.pid) for name, sidecar in sidecars.items()}
        await asyncio.sleep(idle_s)
        idle_cpu_s = {
            name: (cpu_s(sidecar.process.pid) - before_idle[name]) * wall_s[name] / idle_s
            for name, sidecar in sidecars.items()
        }
    finally:
        for child in reversed(children):
            await child.stop()
        for server in servers:
            if server.returncode is None:
                server.terminate()
                await server.wait()
    reference = samples["direct" if "direct" in samples else "base" if "base" in samples else "sidecar"]
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "gateway_transport": {
            "sidecar": "unix socket" if args.unix else "tcp loopback",
            **({"base": "unix socket" if args.base_unix else "tcp loopback"} if args.ab_tree else {}),
        },
        "calls_per_path": len(reference),
        "upstream": "behind OAuth client credentials" if args.oauth else "no credential",
        "ms": {name: summary(values) for name, values in samples.items()},
        "added_p50_ms": {
            name: round(statistics.median(samples[name]) - statistics.median(reference), 3) for name in spent_s
        },
        "sidecar_cpu_ms_per_call": {
            name: round((spent - idle_cpu_s[name]) * 1000 / len(samples[name]), 3) for name, spent in spent_s.items()
        },
        "sidecar_cpu_ms_per_call_by_thread": by_thread,
        "sidecar_idle_cpu_ms_per_call": {
            name: round(idle * 1000 / len(samples[name]), 3) for name, idle in idle_cpu_s.items()
        },
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
    parser.add_argument("--ab-tree", default="", help="a checkout: a second sidecar (`base`) runs its code")
    parser.add_argument("--unix", action="store_true", help="the sidecar's gateway on a Unix socket")
    parser.add_argument("--base-unix", action="store_true", help="the base sidecar's gateway on a Unix socket")
    parser.add_argument("--oauth", action="store_true", help="the MCP server behind OAuth (the tests' stand-ins)")
    parser.add_argument("--py-spy", type=Path, default=None, help="record the sidecar with py-spy into this directory")
    args = parser.parse_args()
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="meshwarden-tool-bench-") as work:
        result = asyncio.run(run(args, Path(work)))
    if args.output == "json":
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['machine']}; {result['calls_per_path']} calls per path, concurrency 1, {result['gateway_transport']}"
    )
    print(f"{'path':<22} {'p50':>8} {'p90':>8} {'p99':>8} {'mean':>8}  (ms)")
    for name, row in result["ms"].items():
        label = "MCP server directly" if name == "direct" else f"through {name}"
        print(f"{label:<22} {row['p50']:>8.3f} {row['p90']:>8.3f} {row['p99']:>8.3f} {row['mean']:>8.3f}")
    for name, added in result["added_p50_ms"].items():
        print(
            f"{name}: added p50 {added:.3f} ms; sidecar CPU per call {result['sidecar_cpu_ms_per_call'][name]:.3f} ms"
        )


if __name__ == "__main__":
    main()
