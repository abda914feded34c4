"""Latency and throughput of one unary call: direct, through the mesh, through plain relays.

    PYTHONPATH=. .venv/bin/python benchmarks/latency.py [--calls 4000] [--concurrency 16]
        [--payload-bytes 1024] [--duration-s 5] [--paths direct,mesh,nginx,pyrelay,pyrelay-mtls]
        (add mesh-noreceipts to --paths to measure what receipts cost, mesh-traced and
        mesh-traced-0 to measure what tracing costs)
        [--handshakes 200] [--output json]

Paths, all on loopback, all ending at the same echo agent process (examples/echo_agent.py):
  direct   client -> agent (meshwarden.v1.Agent/Handle)
  mesh     client -> sidecar A -> sidecar B -> agent (meshwarden.v1.Sidecar/Invoke; a real
           registry, two real sidecars, a real agent, each its own process; mTLS with SPIFFE
           SVIDs between the sidecars and from each sidecar to the registry; a signed policy
           bundle that permits every call, evaluated by both sidecars on every call)
  mesh-noreceipts  the same on a second mesh of its own (registry, two sidecars, echo agent)
           whose sidecars run with --receipts false: mesh - mesh-noreceipts is what writing,
           spooling and shipping receipts costs per call (only when --paths names it)
  mesh-traced  the same on a mesh of its own whose sidecars trace every call and export the
           spans over OTLP/gRPC to a receiver in another process (benchmarks/otlp_sink.py):
           mesh-traced - mesh is what tracing costs per call (only when --paths names it)
  mesh-traced-0  the same with the sampler's ratio at 0 (OTEL_TRACES_SAMPLER_ARG=0): every
           span is recorded and none exported, since no call fails: what tracing costs
           when a production sampler keeps few traces (only when --paths names it)
  mesh-tree  the same on a mesh of its own whose sidecars import meshwarden from another
           checkout (--tree DIR, `git archive COMMIT | tar -x -C DIR`): a change against the
           code before it in one run (only when --paths names it)
  nginx    client -> nginx A -> nginx B -> agent (grpc_pass, cleartext HTTP/2), only when
           `nginx` is on PATH: the plain-proxy reference for two relays in series
  pyrelay  client -> relay A -> relay B -> agent, two bare grpc.aio relays
           (benchmarks/grpc_relay.py): what two Python hops cost before deciding anything
  pyrelay-mtls  the same with mTLS on the hop between the relays only, as the mesh has it
           (SVIDs of a throwaway CA, the sidecars' credentials, the caller's SPIFFE ID read
           on every call): pyrelay-mtls - pyrelay is what identity costs per call
  pyrelay-mtls-DESIGN  the same relays built another way (grpc_relay.py --design: aio-bytes,
           aio-thread-client, sync, sync-bytes, sync-bridge), only when --paths names them: what the hop's
           design costs against grpc.aio's

The handshake, paid once per connection, is measured apart (--handshakes): a fresh channel
to relay B and its first call, plaintext against mTLS.

The load generator is this process's own asyncio loop (grpc.aio), the same client code for
every path; README.md says why. Latency is measured at concurrency 1 in interleaved rounds
(the paths take turns, so a noisy neighbour slows all of them alike); throughput at
--concurrency for --duration-s per path, in interleaved rounds too. Each process's CPU time
per call is read from /proc, and how busy the rest of the machine was meanwhile from
/proc/stat. Every child runs in its own session and is stopped at the end, on error, on
Ctrl-C and on SIGTERM alike.

One file, over 300 lines: it is a script run by path, and each part (processes, nginx,
load, figures) serves only this run. The sections follow the order of a run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import itertools
import json
import math
import os
import platform
import random
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType

try:
    import grpc

    from meshwarden.addresses import parse_host_port
    from meshwarden.clock import SystemClock
    from meshwarden.identity.bootstrap import learn_registry_ca
    from meshwarden.identity.credentials import channel_credentials, expect_peer
    from meshwarden.identity.spiffe_ids import agent_id
    from meshwarden.identity.svid import Svid
    from meshwarden.policy_bundle.artifact import encode
    from meshwarden.policy_bundle.build import build
    from meshwarden.policy_bundle.init import init as write_starting_bundle
    from meshwarden.policy_bundle.keys import keygen, load_private_key
    from meshwarden.policy_bundle.sign import sign
    from meshwarden.registry.issuer import Issuer
    from meshwarden.registry_client import RegistryTrust, registry_channel, registry_stub
    from meshwarden.secure_files import ensure_private_dir, write_atomically
    from meshwarden.supervise import (
        Child,
        HealthTls,
        HealthTlsFor,
        StartError,
        meshwarden_argv,
        registry_health_tls,
        start,
        wait_serving,
    )
    from meshwarden.v1 import agent_pb2, agent_pb2_grpc, registry_pb2, sidecar_pb2, sidecar_pb2_grpc
except ModuleNotFoundError as exc:  # run from a checkout without PYTHONPATH
    sys.exit(
        f"latency.py: cannot import {exc.name}; run it with the project's venv and "
        "PYTHONPATH=<repo root>, or install the project into the venv"
    )

HERE = Path(__file__).resolve().parent
ECHO_AGENT = HERE.parent / "examples" / "echo_agent.py"
# The echo agent's callback secret, known here so that the direct path can call it as its sidecar does.
CALLBACK_TOKEN = secrets.token_urlsafe(32)
CALLBACK_METADATA = (("authorization", f"Bearer {CALLBACK_TOKEN}"),)
RELAY = HERE / "grpc_relay.py"
OTLP_SINK = HERE / "otlp_sink.py"
# Other designs of the bare relay's hop (grpc_relay.py --design), each as a pyrelay-mtls path.
RELAY_DESIGNS = ("aio-bytes", "aio-thread-client", "sync", "sync-bytes", "sync-bridge")
PATHS = (
    "direct",
    "mesh",
    "mesh-noreceipts",
    "mesh-traced",
    "mesh-traced-0",
    "mesh-tree",
    "nginx",
    "pyrelay",
    "pyrelay-mtls",
    *(f"pyrelay-mtls-{design}" for design in RELAY_DESIGNS),
)
DEFAULT_PATHS = ("direct", "mesh", "nginx", "pyrelay", "pyrelay-mtls")
CALL_TIMEOUT_S = 10.0
FIRST_ANSWER_TIMEOUT_S = 30.0  # sidecar A answers once its catalog holds the echo agent
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# nginx cannot bind port 0 and report it, so its ports are tried from this range, below
# Linux's ephemeral range (32768-60999) where the port-0 binds of the other servers land.
NGINX_PORTS = range(20000, 32000)
NGINX_BIND_ATTEMPTS = 20
NGINX_READY_TIMEOUT_S = 10.0
# The throwaway CA of the pyrelay-mtls path: its own trust domain, SVIDs outliving any run.
BENCH_TRUST_DOMAIN = "bench.meshwarden.local"
BENCH_SVID_TTL_S = 6 * 3600.0
# Fresh channels of one kind in a row before the other kind's turn: few blocks, because each
# block's CPU reading is off by up to one clock tick (10 ms) per process.
HANDSHAKE_BLOCK = 50
# The mesh's policy: `bundle init`'s starting bundle with this one policy, signed with a key
# made for the run; sidecars trust its public half (--bundle-keys) and evaluate it per call.
ALLOW_ALL = '@id("allow-all")\n@reason("the benchmark calls the echo agent")\npermit (principal, action, resource);\n'
BUNDLE_KEY_ID = "bench"


class BenchError(RuntimeError):
    """The benchmark could not set up or run a path; the message says which and why."""


def log(text: str) -> None:
    print(f"[latency] {text}", file=sys.stderr, flush=True)


def machine_busy_s() -> float:
    """CPU seconds spent on the whole machine (every core, every process, and the time the
    hypervisor gave to other guests: "steal"), from /proc/stat."""
    fields = read_text(Path("/proc/stat")).partition("\n")[0].split()[1:9]
    if len(fields) < 8:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def on_cpu_ns(process: Path) -> int:
    """Nanoseconds every thread of a process (its /proc directory) has spent on a CPU; a
    thread that ends between the listing and the read is left out."""
    total = 0
    with contextlib.suppress(OSError):
        for task in (process / "task").iterdir():
            total += int(read_text(task / "schedstat").split(" ", 1)[0] or 0)
    return total


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


# ---------------------------------------------------------------------------- processes


class Fleet:
    """The children of one run, each in its own session (so its pid is its process group).

    `async with fleet:` stops them in reverse order of start. `kill_leftovers`, called
    after the event loop has gone, SIGKILLs whatever is left: a second Ctrl-C interrupts
    the asyncio clean-up, and must still leave nothing behind.
    """

    def __init__(self, work: Path) -> None:
        self.work, self.logs = work, work / "logs"
        self.groups: dict[int, str] = {}  # process group -> name
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Fleet:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    def on_exit(self, callback: Callable[[], Awaitable[object]]) -> None:
        self._stack.push_async_callback(callback)

    async def start(
        self,
        name: str,
        argv: Sequence[str],
        health_tls: HealthTlsFor | None = None,
        env: dict[str, str] | None = None,
    ) -> Child:
        """A meshwarden-style child: waits for its ready line and for health SERVING (over TLS
        with `health_tls`, for a server that speaks nothing else); `env` is added to its environment."""
        starting = asyncio.ensure_future(start(name, argv, log_dir=self.logs, health_tls=health_tls, env=env))
        try:
            child = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # meshwarden.supervise.start, cancelled while it waits for the ready line, would
            # leave its child running: let it finish starting, then stop the child.
            with contextlib.suppress(StartError, OSError):
                await (await starting).stop(grace_s=1.0)
            raise
        self.groups[child.process.pid] = name

        async def stop() -> None:
            code = await child.stop()
            self.groups.pop(child.process.pid, None)
            if code not in (0, -signal.SIGTERM):
                log(f"{name} exited with {code}; its log is {child.stderr_path}")

        self.on_exit(stop)
        return child

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far of each child's whole process group (every thread's time on a
        CPU, in ns from /proc/PID/task/*/schedstat: /proc/PID/stat counts 10 ms ticks), and of
        this process (the client, to the microsecond) under "client"."""
        totals = dict.fromkeys(self.groups.values(), 0.0)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            fields = read_text(entry / "stat").rpartition(")")[2].split()
            if len(fields) > 12 and int(fields[2]) in self.groups:
                totals[self.groups[int(fields[2])]] += on_cpu_ns(entry) / 1e9
        usage = resource.getrusage(resource.RUSAGE_SELF)
        totals["client"] = usage.ru_utime + usage.ru_stime
        return totals

    def kill_leftovers(self) -> None:
        """SIGKILLs the group of every child of this process still there, known or not (a
        second Ctrl-C can land while a child is starting, before its pid is known here)."""
        groups = set(self.groups)
        for entry in Path("/proc").iterdir():
            fields = read_text(entry / "stat").rpartition(")")[2].split() if entry.name.isdigit() else []
            if len(fields) > 2 and int(fields[1]) == os.getpid() and int(fields[2]) == int(entry.name):
                groups.add(int(entry.name))  # a child that leads its own group: start_new_session
        for group in sorted(groups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        self.groups.clear()


def sidecar_argv(agent: str, registry: str, data_dir: Path, bundle_keys: Path, *extra: str) -> list[str]:
    """A sidecar on loopback: it enrols with the registry's embedded issuer (open enrolment on
    loopback), keeps its SVID, trust bundle and Workload API socket in `data_dir`, and takes
    policy bundles signed by a key in `bundle_keys`."""
    return meshwarden_argv(
        *("sidecar", "run", "--agent", agent, "--instance-id", f"{agent}-1", "--registry", registry),
        *(
            "--listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
        ),
        *("--data-dir", str(data_dir), "--bundle-keys", str(bundle_keys), *extra),
    )


def tracing_env(endpoint: str, ratio: str) -> dict[str, str]:
    """The OTEL_* variables an operator sets to export spans to `endpoint` (OTLP/gRPC),
    sampling traces at `ratio` (failed calls are exported whatever the ratio)."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{endpoint}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": ratio,
    }


def exported_spans(sink: Child) -> str | None:
    """The sink's last word ("received N spans in M exports"), once it has stopped."""
    lines = [line for line in sink.stderr_text().splitlines() if line.startswith("received ")]
    return lines[-1] if lines else None


def allow_all_bundle(directory: Path) -> tuple[bytes, Path]:
    """A signed policy bundle that permits every call, made as a platform team makes one
    (`bundle init`, `keygen`, `build`, `sign`), and the directory of its trusted public key."""
    keys = keygen(directory / "signing", BUNDLE_KEY_ID)
    trusted = directory / "trusted"
    trusted.mkdir(parents=True)
    shutil.copy(keys.public_key, trusted / keys.public_key.name)
    source = directory / "source"
    write_starting_bundle(source)
    for policy in (source / "policies").glob("*.cedar"):
        policy.unlink()
    (source / "policies" / "allow-all.cedar").write_text(ALLOW_ALL)
    return sign(encode(build(source).artifact), load_private_key(keys.private_key), BUNDLE_KEY_ID), trusted


async def push_bundle(registry: Child, data_dir: Path, artifact: bytes) -> int:
    """`meshwarden bundle push` as an operator: the registry's TLS port with its CA pinned from
    the ready line, and the operator token from its data directory. Returns the revision."""
    ready = registry.addresses
    learned = await asyncio.to_thread(learn_registry_ca, parse_host_port(ready["listen"]), pin=ready["ca_fingerprint"])
    token = (data_dir / "operator.token").read_text().strip()
    async with registry_channel(ready["listen"], RegistryTrust(ready["trust_domain"], learned.bundle_pem)) as channel:
        reply: registry_pb2.PushBundleResponse = await registry_stub(channel).PushBundle(
            registry_pb2.PushBundleRequest(artifact=artifact),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )
    return int(reply.revision)


@dataclass
class Mesh:
    agent: str  # the echo agent's callback address (meshwarden.v1.Agent)
    caller_sidecar: str  # sidecar A's local API (meshwarden.v1.Sidecar)


async def start_mesh(
    fleet: Fleet, name: str = "", sidecar_flags: Sequence[str] = (), sidecar_env: dict[str, str] | None = None
) -> Mesh:
    """The registry (TLS on --listen, mTLS for SVID holders on a second port 0, both in its
    ready line; its health is checked over TLS with the CA pinned from the ready line) with
    an allow-all policy bundle pushed (a sidecar serves once a bundle is active), the callee's
    sidecar, the echo agent, and the caller's sidecar. A second mesh in the same run has a
    `name`, which prefixes its processes and directories; `sidecar_env` is added to both
    sidecars' environment."""
    prefix = f"{name}-" if name else ""
    work = fleet.work / name if name else fleet.work
    data_dir = work / "registry"
    registry = await fleet.start(
        f"{prefix}registry",
        meshwarden_argv(
            "registry", "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", str(data_dir)
        ),
        env={"MESHWARDEN_REGISTRY_ALLOW_UNVERIFIED_BUNDLES": "true"},  # older checkouts ignore it
        health_tls=registry_health_tls,
    )
    log(
        f"registry: TLS {registry.addresses['listen']}, mTLS {registry.addresses['mtls']}, "
        f"trust domain {registry.addresses['trust_domain']}"
    )
    artifact, bundle_keys = await asyncio.to_thread(allow_all_bundle, work / "policy")
    revision = await push_bundle(registry, data_dir, artifact)
    log(f"policy: pushed an allow-all bundle, revision {revision}, signed with key {BUNDLE_KEY_ID!r}")
    sidecars = work / "sidecars"
    callee = await fleet.start(
        f"{prefix}sidecar-b",
        sidecar_argv("echo", registry.addresses["listen"], sidecars / "echo", bundle_keys, *sidecar_flags),
        env=sidecar_env,
    )
    agent = await fleet.start(
        f"{prefix}agent",
        [sys.executable, str(ECHO_AGENT), "--sidecar", callee.addresses["listen"]]
        + ["--listen", "127.0.0.1:0", "--version", "1.0.0", "--announce"],
        env={"MESHWARDEN_AGENT_CALLBACK_TOKEN": CALLBACK_TOKEN},  # the direct path presents it, as a sidecar does
    )
    caller = await fleet.start(
        f"{prefix}sidecar-a",
        sidecar_argv(
            "bench-client", registry.addresses["listen"], sidecars / "bench-client", bundle_keys, *sidecar_flags
        ),
        env=sidecar_env,
    )
    for side in (caller, callee):
        log(f"{side.name}: {side.addresses['spiffe_id']}, peer port {side.addresses['peer']} (mTLS)")
    return Mesh(agent=agent.addresses["listen"], caller_sidecar=caller.addresses["listen"])


class ThrowawayCa:
    """The pyrelay-mtls path's identities: an in-memory SPIFFE CA (the registry's issuer, made
    ephemeral) that issues P-256 SVIDs like the registry's, written for the relays to read."""

    def __init__(self, directory: Path) -> None:
        self.issuer = Issuer.ephemeral(BENCH_TRUST_DOMAIN, SystemClock())
        self.directory = directory
        self.client = self.svid("bench-client")  # the load generator's, for fresh channels to relay B

    def svid(self, name: str) -> Svid:
        return self.issuer.issue(agent_id(BENCH_TRUST_DOMAIN, name), BENCH_SVID_TTL_S)

    def svid_dir(self, name: str) -> tuple[Path, str]:
        """A directory holding a new SVID for agent `name` as grpc_relay.py reads it (its
        SVID_FILE, KEY_FILE and BUNDLE_FILE; the key 0600), and the SVID's SPIFFE ID."""
        svid = self.svid(name)
        directory = ensure_private_dir(self.directory / name)
        for file, data in (
            ("svid.pem", svid.cert_chain_pem),
            ("svid.key", svid.private_key_pem),
            ("bundle.pem", svid.trust_bundle_pem),
        ):
            write_atomically(directory / file, data)
        return directory, svid.spiffe_id

    def credentials(self) -> grpc.ChannelCredentials:
        """Client mTLS as a sidecar dials a peer: trust the CA, present the client's SVID."""
        return channel_credentials(self.client, self.client.trust_bundle_pem)

    def health_tls(self, server_id: str) -> HealthTlsFor:
        return lambda _ready: HealthTls(self.credentials(), tuple(expect_peer(server_id)))


@dataclass
class Relays:
    entry: str  # relay A, where the client calls
    last: str  # relay B, which calls the agent
    last_name: str  # relay B's process, as Fleet names it
    last_id: str = ""  # relay B's SPIFFE ID when it serves mTLS


async def start_pyrelays(
    fleet: Fleet, agent: str, ca: ThrowawayCa | None = None, design: str = "aio", name: str = ""
) -> Relays:
    """Relay B then relay A, ending at `agent`, both of `design`. With `ca`, the hop A -> B is
    mTLS: B serves with its SVID and requires the caller's, A presents its own and checks B's SPIFFE ID."""
    name = name or ("pyrelay" if ca is None else "pyrelay-mtls")
    relay = [sys.executable, str(RELAY), "--design", design]
    if ca is None:
        relay_b = await fleet.start(f"{name}-b", [*relay, "--upstream", agent])
        relay_a = await fleet.start(f"{name}-a", [*relay, "--upstream", relay_b.addresses["listen"]])
        return Relays(relay_a.addresses["listen"], relay_b.addresses["listen"], relay_b.name)
    dir_b, id_b = ca.svid_dir(f"{name}-b")
    dir_a, _ = ca.svid_dir(f"{name}-a")
    relay_b = await fleet.start(
        f"{name}-b",
        [*relay, "--upstream", agent, "--svid-dir", str(dir_b), "--mtls-listen"],
        health_tls=ca.health_tls(id_b),
    )
    relay_a = await fleet.start(
        f"{name}-a",
        [*relay, "--upstream", relay_b.addresses["listen"], "--svid-dir", str(dir_a), "--upstream-spiffe-id", id_b],
    )
    return Relays(relay_a.addresses["listen"], relay_b.addresses["listen"], relay_b.name, id_b)


# -------------------------------------------------------------------------------- nginx


NGINX_CONF = """\
# generated by benchmarks/latency.py: one gRPC relay, cleartext HTTP/2 both ways
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # with the defaults (1000 requests per connection, no upstream keepalive) clients
    # would reconnect every 1000 calls and nginx would dial its upstream for every call
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_max_body_size 0;
    upstream next_hop {{
        server {upstream};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen {listen} http2;
        location / {{
            grpc_pass grpc://next_hop;
        }}
    }}
}}
"""


def nginx_version() -> str | None:
    """nginx's version, or None when it is not on PATH."""
    binary = shutil.which("nginx")
    if binary is None:
        return None
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ")


async def start_nginx(fleet: Fleet, name: str, upstream: str, rng: random.Random) -> str:
    """Starts one nginx relay to `upstream` in the foreground; returns its listen address.

    nginx cannot report a port it chose, so ports of NGINX_PORTS are tried from a random
    start: nginx itself binds (no bind-close-reuse race), and on "Address already in use"
    the next port is tried, up to NGINX_BIND_ATTEMPTS times.
    """
    binary = shutil.which("nginx")
    if binary is None:
        raise BenchError("nginx is not on PATH")
    first = rng.randrange(len(NGINX_PORTS))
    for attempt in range(NGINX_BIND_ATTEMPTS):
        port = NGINX_PORTS[(first + attempt) % len(NGINX_PORTS)]
        listen = f"127.0.0.1:{port}"
        prefix = fleet.work / "nginx" / f"{name}-{port}"
        prefix.mkdir(parents=True)
        prefix.chmod(0o755)  # when run as root, nginx's workers run as nobody
        conf, error_log = prefix / "nginx.conf", prefix / "error.log"
        conf.write_text(NGINX_CONF.format(dir=prefix, upstream=upstream, listen=listen))
        with (prefix / "stderr.log").open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                *(binary, "-p", str(prefix), "-c", str(conf), "-e", str(error_log), "-g", "daemon off;"),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        fleet.groups[process.pid] = name
        fleet.on_exit(functools.partial(stop_nginx, fleet, process))
        if await nginx_bound(process, error_log):
            await asyncio.wait_for(wait_serving(listen), NGINX_READY_TIMEOUT_S)  # through to the agent
            return listen
        text = read_text(error_log) + read_text(prefix / "stderr.log")
        if "Address already in use" not in text:
            raise BenchError(f"{name} did not start (exit {process.returncode}):\n{text}")
        log(f"{name}: port {port} is taken, trying the next one")
    raise BenchError(f"{name}: no free port after {NGINX_BIND_ATTEMPTS} tries in {NGINX_PORTS}")


async def nginx_bound(process: asyncio.subprocess.Process, error_log: Path) -> bool:
    """True once nginx starts its workers (it has bound by then); False if it exits first."""
    deadline = time.monotonic() + NGINX_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.returncode is not None:
            return False
        if "start worker process" in read_text(error_log):
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 0.02)
    raise BenchError(f"nginx did not start its workers within {NGINX_READY_TIMEOUT_S} s: {error_log}")


async def stop_nginx(fleet: Fleet, process: asyncio.subprocess.Process) -> None:
    """SIGTERM (nginx's fast shutdown) to the group, SIGKILL after 5 s."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # a worker that outlived its master
    fleet.groups.pop(process.pid, None)


# --------------------------------------------------------------------------------- load


Invoke = Callable[[], Awaitable[int]]  # makes one call; returns the result's size in bytes


def payload_of(size: int) -> bytes:
    """A JSON object of exactly `size` bytes: {"data":"xxx..."}."""
    frame = b'{"data":""}'
    if size < len(frame):
        raise BenchError(f"--payload-bytes must be at least {len(frame)}, got {size}")
    return frame[:-2] + b"x" * (size - len(frame)) + frame[-2:]


def channel_to(
    address: str, credentials: grpc.ChannelCredentials | None = None, extra: Sequence[tuple[str, object]] = ()
) -> grpc.aio.Channel:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        *extra,
    ]
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, credentials, options=options)


def agent_invoke(channel: grpc.aio.Channel, payload: bytes) -> Invoke:
    """meshwarden.v1.Agent/Handle, as the callee's sidecar calls it."""
    handle = agent_pb2_grpc.AgentStub(channel).Handle
    delivery = agent_pb2.Delivery(
        call_id="bench", capability="echo", payload_json=payload, caller_agent="bench-client", attempt=1
    )

    async def invoke() -> int:
        reply: agent_pb2.Outcome = await handle(delivery, timeout=CALL_TIMEOUT_S, metadata=CALLBACK_METADATA)
        return len(reply.result_json)

    return invoke


def sidecar_invoke(channel: grpc.aio.Channel, payload: bytes, *, keyed: bool = False) -> Invoke:
    """meshwarden.v1.Sidecar/Invoke, as the SDK's Client.invoke calls it; `keyed`: each call
    with a fresh idempotency key, as the SDK gives it by default (else none)."""
    call = sidecar_pb2_grpc.SidecarStub(channel).Invoke
    request = sidecar_pb2.InvokeRequest(capability="echo", payload_json=payload)
    keys = itertools.count()
    prefix = os.urandom(4).hex()

    async def invoke() -> int:
        sent = request
        if keyed:
            sent = sidecar_pb2.InvokeRequest(
                capability="echo", payload_json=payload, idempotency_key=f"{prefix}-{next(keys)}"
            )
        reply: sidecar_pb2.InvokeResponse = await call(sent, timeout=CALL_TIMEOUT_S)
        return len(reply.result_json)

    return invoke


async def first_answer(path: str, invoke: Invoke, payload_bytes: int) -> None:
    """Calls until one call succeeds, and checks that the answer carries the payload back."""
    deadline = time.monotonic() + FIRST_ANSWER_TIMEOUT_S
    while True:
        try:
            size = await invoke()
        except grpc.aio.AioRpcError as err:
            # UNAVAILABLE / NOT_FOUND: sidecar A has no catalog, or not the echo agent, yet
            if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND):
                raise BenchError(f"{path}: the first call failed: {err.code().name}: {err.details()}") from err
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{path}: no answer within {FIRST_ANSWER_TIMEOUT_S} s: {err.code().name}: {err.details()}"
                ) from err
            await asyncio.sleep(0.1)
            continue
        if size < payload_bytes:
            raise BenchError(f"{path}: the echo came back with {size} bytes for a {payload_bytes}-byte payload")
        return


@dataclass
class Samples:
    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    async def call(self, invoke: Invoke) -> bool:
        """Makes one call and records it; True when it succeeded."""
        started = time.perf_counter_ns()
        try:
            await invoke()
        except grpc.aio.AioRpcError as err:
            self.errors += 1
            self.first_error = self.first_error or f"{err.code().name}: {err.details()}"
            return False
        self.latencies_ns.append(time.perf_counter_ns() - started)
        return True


async def sequential(invoke: Invoke, count: int, into: Samples) -> None:
    for _ in range(count):
        await into.call(invoke)


async def concurrent(invoke: Invoke, concurrency: int, duration_s: float, into: Samples) -> int:
    """`concurrency` callers, each calling back to back until `duration_s` has passed, their
    calls recorded `into`. Returns how many calls succeeded within `duration_s`: the calls
    still in flight then are waited for but not counted, so that the wind-down (fewer than
    `concurrency` calls in flight) does not count as time at full load."""
    stop_at = time.perf_counter() + duration_s
    answered = 0

    async def caller() -> None:
        nonlocal answered
        while time.perf_counter() < stop_at:
            if await into.call(invoke) and time.perf_counter() <= stop_at:
                answered += 1

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return answered


@dataclass
class Handshakes:
    """Fresh channels to relay B, each closed after its first call, by kind."""

    latencies_ns: dict[str, list[int]] = field(default_factory=lambda: {"plaintext": [], "mtls": []})
    cpu_s: dict[str, dict[str, float]] = field(default_factory=lambda: {"plaintext": {}, "mtls": {}})
    errors: int = 0
    first_error: str = ""


async def fresh_channel_call(
    address: str, payload: bytes, credentials: grpc.ChannelCredentials | None, extra: Sequence[tuple[str, object]]
) -> int:
    """Nanoseconds from a new channel to the answer of its first call: connect (TCP, the TLS
    handshake when `credentials` are given, HTTP/2 set-up) plus one call. The channel gets its
    own subchannel pool, so it never reuses a connection another channel left behind."""
    started = time.perf_counter_ns()
    channel = channel_to(address, credentials, [("grpc.use_local_subchannel_pool", 1), *extra])
    try:
        await agent_invoke(channel, payload)()
        return time.perf_counter_ns() - started
    finally:
        await channel.close()


async def measure_handshakes(
    fleet: Fleet, plain: Relays, mtls: Relays, ca: ThrowawayCa, payload: bytes, count: int
) -> Handshakes:
    """`count` fresh channels of each kind to relay B of `plain` and of `mtls` (the same relay
    but for mTLS), in alternating blocks of HANDSHAKE_BLOCK, with the CPU that the client,
    relay B and the agent spent (the other processes take no part)."""
    kinds: dict[str, tuple[Relays, grpc.ChannelCredentials | None, list[tuple[str, object]]]] = {
        "plaintext": (plain, None, []),
        "mtls": (mtls, ca.credentials(), [*expect_peer(mtls.last_id)]),
    }
    found = Handshakes()
    for kind, (relays, credentials, extra) in kinds.items():  # one unmeasured of each first
        try:
            await fresh_channel_call(relays.last, payload, credentials, extra)
        except grpc.aio.AioRpcError as err:
            raise BenchError(f"handshakes: a fresh {kind} channel failed: {err.code().name}: {err.details()}") from err
    done = 0
    while done < count:
        block = min(HANDSHAKE_BLOCK, count - done)
        for kind, (relays, credentials, extra) in kinds.items():
            before = fleet.cpu_seconds()
            for _ in range(block):
                try:
                    found.latencies_ns[kind].append(await fresh_channel_call(relays.last, payload, credentials, extra))
                except grpc.aio.AioRpcError as err:
                    found.errors += 1
                    found.first_error = found.first_error or f"{kind}: {err.code().name}: {err.details()}"
            after = fleet.cpu_seconds()
            for process, name in (("client", "client"), (relays.last_name, "relay B"), ("agent", "agent")):
                spent = after.get(process, 0.0) - before.get(process, 0.0)
                found.cpu_s[kind][name] = found.cpu_s[kind].get(name, 0.0) + spent
        done += block
    return found


# ------------------------------------------------------------------------------ figures


def percentile_ms(sorted_ns: Sequence[int], q: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    if not sorted_ns:
        return math.nan
    return sorted_ns[max(math.ceil(q / 100 * len(sorted_ns)), 1) - 1] / 1e6


@dataclass
class Run:
    """The calls of one path at one concurrency, made in slices (the rounds), and what the
    machine spent meanwhile."""

    samples: Samples = field(default_factory=Samples)
    wall_s: float = 0.0  # time the slices took, wind-down included
    window_s: float = 0.0  # the slices' set durations (throughput only)
    window_calls: int = 0  # calls answered within them
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds each process spent meanwhile
    others_s: float = 0.0  # CPU seconds the rest of the machine spent meanwhile

    async def slice(self, fleet: Fleet, work: Awaitable[int | None]) -> None:
        """Runs `work` (calls into self.samples), adding the time and CPU it took."""
        before, busy, started = fleet.cpu_seconds(), machine_busy_s(), time.perf_counter()
        answered = await work
        self.wall_s += time.perf_counter() - started
        spent = {name: seconds - before.get(name, 0.0) for name, seconds in fleet.cpu_seconds().items()}
        self.others_s += machine_busy_s() - busy - sum(spent.values())
        for name, seconds in spent.items():
            self.cpu_s[name] = self.cpu_s.get(name, 0.0) + seconds
        self.window_calls += answered or 0

    def other_load_cores(self) -> float:
        """How many cores, on average, the rest of the machine kept busy meanwhile."""
        return max(self.others_s, 0.0) / self.wall_s if self.wall_s > 0 else math.nan

    def cpu_us_per_call(self) -> dict[str, float]:
        """By process, the ones that did any work; "total" sums them."""
        calls = len(self.samples.latencies_ns) + self.samples.errors
        per_call = {name: s * 1e6 / calls for name, s in self.cpu_s.items() if calls and s > 0}
        per_call["total"] = sum(per_call.values())
        return per_call


@dataclass
class PathFigures:
    calls: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    p50_vs_direct: float
    cpu_us_per_call: dict[str, float]  # at concurrency 1, by process
    concurrency: int
    throughput_calls_per_s: float
    throughput_calls: int
    loaded_p50_ms: float
    loaded_p99_ms: float
    loaded_cpu_us_per_call: dict[str, float]  # at --concurrency, by process
    other_load_cores: float  # cores the rest of the machine kept busy meanwhile, at concurrency 1
    loaded_other_load_cores: float  # and at --concurrency
    errors: int
    first_error: str


def figures(seq: Run, load: Run, concurrency: int, direct_p50: float) -> PathFigures:
    lat, loaded = sorted(seq.samples.latencies_ns), sorted(load.samples.latencies_ns)
    p50 = percentile_ms(lat, 50)
    return PathFigures(
        calls=len(lat),
        p50_ms=p50,
        p99_ms=percentile_ms(lat, 99),
        mean_ms=sum(lat) / len(lat) / 1e6 if lat else math.nan,
        max_ms=lat[-1] / 1e6 if lat else math.nan,
        p50_vs_direct=p50 / direct_p50 if direct_p50 > 0 else math.nan,
        cpu_us_per_call=seq.cpu_us_per_call(),
        concurrency=concurrency,
        throughput_calls_per_s=load.window_calls / load.window_s if load.window_s > 0 else math.nan,
        throughput_calls=load.window_calls,
        loaded_p50_ms=percentile_ms(loaded, 50),
        loaded_p99_ms=percentile_ms(loaded, 99),
        loaded_cpu_us_per_call=load.cpu_us_per_call(),
        other_load_cores=seq.other_load_cores(),
        loaded_other_load_cores=load.other_load_cores(),
        errors=seq.samples.errors + load.samples.errors,
        first_error=seq.samples.first_error or load.samples.first_error,
    )


@dataclass
class HandshakeFigures:
    """A fresh channel to relay B and its first call: plaintext against mTLS."""

    samples: int  # per kind
    plaintext_p50_ms: float
    plaintext_p90_ms: float
    mtls_p50_ms: float
    mtls_p90_ms: float
    plaintext_cpu_us: dict[str, float]  # per fresh channel and first call, by process
    mtls_cpu_us: dict[str, float]
    errors: int
    first_error: str


def handshake_figures(found: Handshakes) -> HandshakeFigures:
    plain, mtls = sorted(found.latencies_ns["plaintext"]), sorted(found.latencies_ns["mtls"])

    def per_channel(kind: str, count: int) -> dict[str, float]:
        spent = {name: s * 1e6 / count for name, s in found.cpu_s[kind].items() if count and s > 0}
        spent["total"] = sum(spent.values())
        return spent

    return HandshakeFigures(
        samples=len(plain),
        plaintext_p50_ms=percentile_ms(plain, 50),
        plaintext_p90_ms=percentile_ms(plain, 90),
        mtls_p50_ms=percentile_ms(mtls, 50),
        mtls_p90_ms=percentile_ms(mtls, 90),
        plaintext_cpu_us=per_channel("plaintext", len(plain)),
        mtls_cpu_us=per_channel("mtls", len(mtls)),
        errors=found.errors,
        first_error=found.first_error,
    )


def difference(a: PathFigures, b: PathFigures) -> dict[str, float]:
    """What path `a` costs per call over path `b` (measured in the same run)."""
    return {
        "p50_ms": a.p50_ms - b.p50_ms,
        "p99_ms": a.p99_ms - b.p99_ms,
        "cpu_us_per_call": a.cpu_us_per_call["total"] - b.cpu_us_per_call["total"],
        "loaded_cpu_us_per_call": a.loaded_cpu_us_per_call["total"] - b.loaded_cpu_us_per_call["total"],
        "throughput_calls_per_s": a.throughput_calls_per_s - b.throughput_calls_per_s,
        "throughput_ratio": a.throughput_calls_per_s / b.throughput_calls_per_s
        if b.throughput_calls_per_s
        else math.nan,
        "loaded_p50_ms": a.loaded_p50_ms - b.loaded_p50_ms,
        "loaded_p99_ms": a.loaded_p99_ms - b.loaded_p99_ms,
    }


# What the differences between paths tell, each when both paths ran: name -> (path, minus path).
DIFFERENCES = {
    "identity": ("pyrelay-mtls", "pyrelay"),  # mTLS on the relays' hop: what identity costs per call
    "mesh_stages": ("mesh", "pyrelay-mtls"),  # the mesh's own stages, identity's transport set aside
    "receipts": ("mesh", "mesh-noreceipts"),  # writing, spooling and shipping receipts
    "tracing": ("mesh-traced", "mesh"),  # spans at both sidecars, exported over OTLP
    "tracing_sampled_out": ("mesh-traced-0", "mesh"),  # spans recorded, none exported
}


def differences(results: dict[str, PathFigures]) -> dict[str, dict[str, float]]:
    return {name: difference(results[a], results[b]) for name, (a, b) in DIFFERENCES.items() if {a, b} <= set(results)}


def machine(nginx: str | None) -> dict[str, str]:
    model = next(
        (
            line.partition(":")[2].strip()
            for line in read_text(Path("/proc/cpuinfo")).splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "nginx": nginx or "not used",
    }


def without_nan(value: object) -> object:
    """`value` with NaN (a figure that could not be computed) as null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    return value


def table(
    results: dict[str, PathFigures],
    skipped: dict[str, str],
    concurrency: int,
    handshakes: HandshakeFigures | None,
) -> str:
    c = str(concurrency)
    head = (
        f"{'path':<15} {'p50 ms':>7} {'p99 ms':>7} {'p50/direct':>10} {'calls/s @' + c:>12} "
        f"{'p50 ms @' + c:>11} {'p99 ms @' + c:>11} {'errors':>6}"
    )
    lines = [head, "-" * len(head)]
    for path in PATHS:
        if path in skipped:
            lines.append(f"{path:<15} skipped: {skipped[path]}")
        if path not in results:
            continue
        f = results[path]
        ratio = f"{f.p50_vs_direct:.2f}x" if not math.isnan(f.p50_vs_direct) else "-"
        lines.append(
            f"{path:<15} {f.p50_ms:>7.3f} {f.p99_ms:>7.3f} {ratio:>10} {f.throughput_calls_per_s:>12.0f} "
            f"{f.loaded_p50_ms:>11.3f} {f.loaded_p99_ms:>11.3f} {f.errors:>6}"
        )
    for title, key in (("1", "cpu_us_per_call"), (c, "loaded_cpu_us_per_call")):
        lines += [
            "",
            f"CPU time per call at concurrency {title}, microseconds, by process (other work: cores that the "
            "rest of the machine kept busy meanwhile):",
        ]
        for path, f in results.items():
            cpu: dict[str, float] = getattr(f, key)
            parts = [f"{name} {us:.0f}" for name, us in cpu.items() if name != "total" and us > 10]
            others: float = f.other_load_cores if key == "cpu_us_per_call" else f.loaded_other_load_cores
            lines.append(f"{path:<15} total {cpu['total']:>5.0f}: {', '.join(parts)}; other work {others:.2f} cores")
    titles = {
        "identity": "identity (mTLS) per call",
        "mesh_stages": "the mesh's own stages",
        "receipts": "receipts per call",
        "tracing": "tracing, every span exported",
        "tracing_sampled_out": "tracing, sampled out",
    }
    for name, d in differences(results).items():
        a, b = DIFFERENCES[name]
        lines += [
            "",
            f"{titles[name]} = {a} - {b}: p50 {d['p50_ms']:+.3f} ms, p99 {d['p99_ms']:+.3f} ms, "
            f"CPU {d['cpu_us_per_call']:+.0f} us per call at concurrency 1 and {d['loaded_cpu_us_per_call']:+.0f} "
            f"at {c}, throughput {d['throughput_calls_per_s']:+.0f} calls/s ({d['throughput_ratio'] - 1:+.1%}), "
            f"p50 @{c} {d['loaded_p50_ms']:+.3f} ms, p99 @{c} {d['loaded_p99_ms']:+.3f} ms",
        ]
    if handshakes is not None:
        h = handshakes
        lines += ["", f"A fresh channel to relay B and its first call, {h.samples} of each kind:"]
        for kind, p50, p90, cpu in (
            ("plaintext", h.plaintext_p50_ms, h.plaintext_p90_ms, h.plaintext_cpu_us),
            ("mtls", h.mtls_p50_ms, h.mtls_p90_ms, h.mtls_cpu_us),
        ):
            parts = [f"{name} {us:.0f}" for name, us in cpu.items() if name != "total" and us > 10]
            lines.append(
                f"{kind:<12} p50 {p50:.3f} ms, p90 {p90:.3f} ms; CPU us total {cpu['total']:.0f}: {', '.join(parts)}"
            )
        lines.append(
            f"the handshake  p50 {h.mtls_p50_ms - h.plaintext_p50_ms:+.3f} ms, "
            f"CPU {h.mtls_cpu_us['total'] - h.plaintext_cpu_us['total']:+.0f} us per connection"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- run


async def measure(args: argparse.Namespace, fleet: Fleet) -> int:
    paths: list[str] = args.paths
    skipped: dict[str, str] = {}
    nginx = nginx_version() if "nginx" in paths else None
    if "nginx" in paths and nginx is None:
        skipped["nginx"] = "nginx is not on PATH (apt-get install nginx-light, then run again)"
        paths = [p for p in paths if p != "nginx"]
        log(f"nginx path skipped: {skipped['nginx']}")
    payload = payload_of(args.payload_bytes)

    async with fleet:
        log(f"starting the registry, two sidecars and the echo agent (logs in {fleet.logs})")
        mesh = await start_mesh(fleet)
        targets = {"direct": mesh.agent, "mesh": mesh.caller_sidecar}
        if "mesh-noreceipts" in paths:
            log("starting a second mesh whose sidecars write no receipts (--receipts false)")
            plain = await start_mesh(fleet, "noreceipts", ("--receipts", "false"))
            targets["mesh-noreceipts"] = plain.caller_sidecar
        sink: Child | None = None
        if {"mesh-traced", "mesh-traced-0"} & set(paths):
            sink = await fleet.start("otlp-sink", [sys.executable, str(OTLP_SINK), "--listen", "127.0.0.1:0"])
        if "mesh-tree" in paths:
            log(f"starting mesh-tree: a mesh whose sidecars run the code in {args.tree}")
            tree_env = {"PYTHONSAFEPATH": "1", "PYTHONPATH": str(Path(args.tree).resolve())}
            targets["mesh-tree"] = (await start_mesh(fleet, "tree", (), tree_env)).caller_sidecar
        for path, ratio in (("mesh-traced", "1"), ("mesh-traced-0", "0")):
            if path in paths and sink is not None:
                log(f"starting {path}: a mesh whose sidecars trace with ratio {ratio}, to {sink.addresses['listen']}")
                traced = await start_mesh(fleet, path[len("mesh-") :], (), tracing_env(sink.addresses["listen"], ratio))
                targets[path] = traced.caller_sidecar
        if "nginx" in paths:
            relay_b = await start_nginx(fleet, "nginx-b", mesh.agent, random.Random())
            targets["nginx"] = await start_nginx(fleet, "nginx-a", relay_b, random.Random())
            log(f"nginx relays: {targets['nginx']} -> {relay_b} -> agent {mesh.agent}")
        relays: dict[str, Relays] = {}
        if "pyrelay" in paths:
            relays["pyrelay"] = await start_pyrelays(fleet, mesh.agent)
        ca = ThrowawayCa(fleet.work / "svids") if "pyrelay-mtls" in paths else None
        if ca is not None:
            relays["pyrelay-mtls"] = await start_pyrelays(fleet, mesh.agent, ca)
            log(f"pyrelay-mtls: relay B is {relays['pyrelay-mtls'].last_id}, SVIDs of a throwaway CA")
        for design in RELAY_DESIGNS:
            if (path := f"pyrelay-mtls-{design}") in paths:
                ca = ca or ThrowawayCa(fleet.work / "svids")
                relays[path] = await start_pyrelays(fleet, mesh.agent, ca, design, path)
        targets.update({path: r.entry for path, r in relays.items()})
        invokes: dict[str, Invoke] = {}
        for path in paths:
            channel = channel_to(targets[path])
            fleet.on_exit(channel.close)
            invokes[path] = (sidecar_invoke if path.startswith("mesh") else agent_invoke)(channel, payload)
            await first_answer(path, invokes[path], args.payload_bytes)

        log(f"warm-up: {args.warmup} calls per path")
        for path in paths:
            await sequential(invokes[path], args.warmup, Samples())
        log(f"latency at concurrency 1: {args.calls} calls per path in {args.rounds} interleaved rounds")
        seq = {path: Run() for path in paths}
        for r in range(args.rounds):
            count = args.calls // args.rounds + (1 if r < args.calls % args.rounds else 0)
            for path in paths[r % len(paths) :] + paths[: r % len(paths)]:
                await seq[path].slice(fleet, sequential(invokes[path], count, seq[path].samples))
        log(f"throughput at concurrency {args.concurrency}: {args.duration_s} s per path in {args.rounds} rounds")
        for path in paths:  # unmeasured warm-up at that concurrency
            await concurrent(invokes[path], args.concurrency, min(1.0, args.duration_s / 5), Samples())
        loaded = {path: Run() for path in paths}
        window_s = args.duration_s / args.rounds
        for r in range(args.rounds):
            for path in paths[r % len(paths) :] + paths[: r % len(paths)]:
                run = loaded[path]
                await run.slice(fleet, concurrent(invokes[path], args.concurrency, window_s, run.samples))
                run.window_s += window_s
        handshakes = None
        if args.handshakes and not {"pyrelay", "pyrelay-mtls"} <= relays.keys():
            log("handshakes not measured: they need both the pyrelay and the pyrelay-mtls paths")
        elif args.handshakes and ca is not None:
            log(f"handshakes: {args.handshakes} fresh channels to relay B, plaintext and mTLS each")
            found = await measure_handshakes(
                fleet, relays["pyrelay"], relays["pyrelay-mtls"], ca, payload, args.handshakes
            )
            handshakes = handshake_figures(found)
        log("stopping every process")

    spans_exported = exported_spans(sink) if sink is not None else None
    if spans_exported is not None:
        log(f"otlp-sink: {spans_exported}")
    direct_p50 = percentile_ms(sorted(seq["direct"].samples.latencies_ns), 50) if "direct" in seq else math.nan
    results = {p: figures(seq[p], loaded[p], args.concurrency, direct_p50) for p in paths}
    host = machine(nginx)
    report = {
        "machine": host,
        "settings": {
            k: getattr(args, k)
            for k in ("calls", "warmup", "rounds", "concurrency", "duration_s", "payload_bytes", "handshakes")
        },
        "paths": {p: asdict(f) for p, f in results.items()},
        "differences": differences(results),
        "handshakes": None if handshakes is None else asdict(handshakes),
        "otlp_sink": spans_exported,
        "skipped": skipped,
    }
    human = (
        table(results, skipped, args.concurrency, handshakes) + "\n\n" + ", ".join(f"{k} {v}" for k, v in host.items())
    )
    print(human, file=sys.stderr if args.output == "json" else sys.stdout)
    if args.output == "json":
        print(json.dumps(without_nan(report), indent=2))
    failed = {p: f for p, f in results.items() if f.errors}
    for path, f in failed.items():
        log(f"{path}: {f.errors} calls failed; the first: {f.first_error}")
    if handshakes is not None and handshakes.errors:
        log(f"handshakes: {handshakes.errors} first calls failed; the first: {handshakes.first_error}")
    return 1 if failed or (handshakes is not None and handshakes.errors) else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=4000, help="calls per path at concurrency 1")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured calls per path first")
    parser.add_argument(
        "--rounds", type=int, default=8, help="interleaved rounds the calls, and the throughput time, are split into"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="callers in flight for throughput")
    parser.add_argument("--duration-s", type=float, default=5.0, help="throughput run per path, seconds")
    parser.add_argument("--payload-bytes", type=int, default=1024, help="size of the JSON payload sent")
    parser.add_argument(
        "--handshakes",
        type=int,
        default=200,
        help="fresh channels to relay B of each kind, plaintext and mTLS, to time the handshake "
        "(needs the pyrelay and pyrelay-mtls paths; 0: none)",
    )
    parser.add_argument("--paths", default=",".join(DEFAULT_PATHS), help="comma-separated subset of " + ",".join(PATHS))
    parser.add_argument("--tree", default="", help="the checkout the mesh-tree path's sidecars run")
    parser.add_argument(
        "--output",
        choices=["table", "json"],
        default="table",
        help="json: figures as JSON on stdout, the table on stderr",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory with every log")
    args = parser.parse_args(argv)
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in args.paths if p not in PATHS]
    if unknown or not args.paths:
        parser.error(f"--paths takes a subset of {','.join(PATHS)}, got {unknown or 'nothing'}")
    for name, least in (("calls", 1), ("warmup", 0), ("rounds", 1), ("concurrency", 1), ("handshakes", 0)):
        if getattr(args, name) < least:
            parser.error(f"--{name} must be at least {least}, got {getattr(args, name)}")
    if "mesh-tree" in args.paths and not args.tree:
        parser.error("the mesh-tree path needs --tree CHECKOUT")
    if args.rounds > args.calls:
        parser.error("--rounds must not exceed --calls")
    if args.duration_s <= 0:
        parser.error("--duration-s must be positive")
    return args


async def run(args: argparse.Namespace, fleet: Fleet) -> int:
    """`measure`, cancelled cleanly (every child stopped) on SIGTERM as on Ctrl-C."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await measure(args, fleet)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="meshwarden-bench-"))
    work.chmod(0o711)  # nginx's workers (nobody, when run as root) reach their directories
    fleet = Fleet(work)
    keep = args.keep_logs
    try:
        return asyncio.run(run(args, fleet))
    except (BenchError, StartError, TimeoutError) as exc:
        log(f"failed: {exc}")
        keep = True
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted; stopping every process")
        return 130
    finally:
        fleet.kill_leftovers()
        if keep:
            log(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
