"""Latency and throughput of one unary call: direct, through the mesh, through plain relays.

    PYTHONPATH=. .venv/bin/python benchmarks/latency.py [--calls 2000] [--concurrency 16]
        [--payload-bytes 1024] [--duration-s 5] [--paths direct,mesh,nginx,pyrelay] [--output json]

Paths, all on loopback, all ending at the same echo agent process (examples/echo_agent.py):
  direct   client -> agent (meshwarden.v1.Agent/Handle)
  mesh     client -> sidecar A -> sidecar B -> agent (meshwarden.v1.Sidecar/Invoke; a real
           registry, two real sidecars, a real agent, each its own process)
  nginx    client -> nginx A -> nginx B -> agent (grpc_pass, cleartext HTTP/2), only when
           `nginx` is on PATH: the plain-proxy reference for two relays in series
  pyrelay  client -> relay A -> relay B -> agent, two bare grpc.aio relays
           (benchmarks/grpc_relay.py): what two Python hops cost before deciding anything

The load generator is this process's own asyncio loop (grpc.aio), the same client code for
every path; README.md says why. Latency is measured at concurrency 1 in interleaved rounds
(the paths take turns, so a noisy neighbour slows all of them alike); throughput at
--concurrency for --duration-s per path, with each process's CPU time per call read from
/proc. Every child runs in its own session and is stopped at the end, on error, on Ctrl-C
and on SIGTERM alike.

One file, over 300 lines: it is a script run by path, and each part (processes, nginx,
load, figures) serves only this run. The sections follow the order of a run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import json
import math
import os
import platform
import random
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

    from meshwarden.supervise import Child, StartError, meshwarden_argv, start, wait_serving
    from meshwarden.v1 import agent_pb2, agent_pb2_grpc, sidecar_pb2, sidecar_pb2_grpc
except ModuleNotFoundError as exc:  # run from a checkout without PYTHONPATH
    sys.exit(
        f"latency.py: cannot import {exc.name}; run it with the project's venv and "
        "PYTHONPATH=<repo root>, or install the project into the venv"
    )

HERE = Path(__file__).resolve().parent
ECHO_AGENT = HERE.parent / "examples" / "echo_agent.py"
RELAY = HERE / "grpc_relay.py"
PATHS = ("direct", "mesh", "nginx", "pyrelay")
CALL_TIMEOUT_S = 10.0
FIRST_ANSWER_TIMEOUT_S = 30.0  # sidecar A answers once its catalog holds the echo agent
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# nginx cannot bind port 0 and report it, so its ports are tried from this range, below
# Linux's ephemeral range (32768-60999) where the port-0 binds of the other servers land.
NGINX_PORTS = range(20000, 32000)
NGINX_BIND_ATTEMPTS = 20
NGINX_READY_TIMEOUT_S = 10.0


class BenchError(RuntimeError):
    """The benchmark could not set up or run a path; the message says which and why."""


def log(text: str) -> None:
    print(f"[latency] {text}", file=sys.stderr, flush=True)


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

    async def start(self, name: str, argv: Sequence[str]) -> Child:
        """A meshwarden-style child: waits for its ready line and for health SERVING."""
        starting = asyncio.ensure_future(start(name, argv, log_dir=self.logs))
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
        """User + system CPU seconds so far of each child's whole process group, and of
        this process (the client) under "client"."""
        tick = os.sysconf("SC_CLK_TCK")
        totals = dict.fromkeys(self.groups.values(), 0.0)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            fields = read_text(entry / "stat").rpartition(")")[2].split()
            if len(fields) > 12 and int(fields[2]) in self.groups:
                totals[self.groups[int(fields[2])]] += (int(fields[11]) + int(fields[12])) / tick
        times = os.times()
        totals["client"] = times.user + times.system
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


def sidecar_argv(agent: str, registry: str) -> list[str]:
    return meshwarden_argv(
        *("sidecar", "run", "--agent", agent, "--instance-id", f"{agent}-1", "--registry", registry),
        *("--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0"),
    )


@dataclass
class Mesh:
    agent: str  # the echo agent's callback address (meshwarden.v1.Agent)
    caller_sidecar: str  # sidecar A's local API (meshwarden.v1.Sidecar)


async def start_mesh(fleet: Fleet) -> Mesh:
    registry = await fleet.start(
        "registry",
        meshwarden_argv("registry", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(fleet.work / "registry")),
    )
    callee = await fleet.start("sidecar-b", sidecar_argv("echo", registry.addresses["listen"]))
    agent = await fleet.start(
        "agent",
        [sys.executable, str(ECHO_AGENT), "--sidecar", callee.addresses["listen"]]
        + ["--listen", "127.0.0.1:0", "--version", "1.0.0", "--announce"],
    )
    caller = await fleet.start("sidecar-a", sidecar_argv("bench-client", registry.addresses["listen"]))
    return Mesh(agent=agent.addresses["listen"], caller_sidecar=caller.addresses["listen"])


async def start_pyrelays(fleet: Fleet, agent: str) -> str:
    relay_b = await fleet.start("pyrelay-b", [sys.executable, str(RELAY), "--upstream", agent])
    relay_a = await fleet.start("pyrelay-a", [sys.executable, str(RELAY), "--upstream", relay_b.addresses["listen"]])
    return relay_a.addresses["listen"]


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


def channel_to(address: str) -> grpc.aio.Channel:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    return grpc.aio.insecure_channel(address, options=options)


def agent_invoke(channel: grpc.aio.Channel, payload: bytes) -> Invoke:
    """meshwarden.v1.Agent/Handle, as the callee's sidecar calls it."""
    handle = agent_pb2_grpc.AgentStub(channel).Handle
    delivery = agent_pb2.Delivery(
        call_id="bench", capability="echo", payload_json=payload, caller_agent="bench-client", attempt=1
    )

    async def invoke() -> int:
        reply: agent_pb2.Outcome = await handle(delivery, timeout=CALL_TIMEOUT_S)
        return len(reply.result_json)

    return invoke


def sidecar_invoke(channel: grpc.aio.Channel, payload: bytes) -> Invoke:
    """meshwarden.v1.Sidecar/Invoke, as the SDK's Client.invoke calls it."""
    call = sidecar_pb2_grpc.SidecarStub(channel).Invoke
    request = sidecar_pb2.InvokeRequest(capability="echo", payload_json=payload)

    async def invoke() -> int:
        reply: sidecar_pb2.InvokeResponse = await call(request, timeout=CALL_TIMEOUT_S)
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

    async def call(self, invoke: Invoke) -> None:
        started = time.perf_counter_ns()
        try:
            await invoke()
        except grpc.aio.AioRpcError as err:
            self.errors += 1
            self.first_error = self.first_error or f"{err.code().name}: {err.details()}"
            return
        self.latencies_ns.append(time.perf_counter_ns() - started)


async def sequential(invoke: Invoke, count: int, into: Samples) -> None:
    for _ in range(count):
        await into.call(invoke)


async def concurrent(invoke: Invoke, concurrency: int, duration_s: float) -> tuple[Samples, float]:
    """`concurrency` callers, each calling back to back until `duration_s` has passed.
    Returns the samples and the time elapsed until the last answer."""
    samples = Samples()
    stop_at = time.perf_counter() + duration_s

    async def caller() -> None:
        while time.perf_counter() < stop_at:
            await samples.call(invoke)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return samples, time.perf_counter() - started


# ------------------------------------------------------------------------------ figures


def percentile_ms(sorted_ns: Sequence[int], q: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    if not sorted_ns:
        return math.nan
    return sorted_ns[max(math.ceil(q / 100 * len(sorted_ns)), 1) - 1] / 1e6


@dataclass
class Run:
    samples: Samples
    elapsed_s: float
    cpu_s: dict[str, float]  # CPU seconds each process spent meanwhile

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
        throughput_calls_per_s=len(loaded) / load.elapsed_s,
        throughput_calls=len(loaded),
        loaded_p50_ms=percentile_ms(loaded, 50),
        loaded_p99_ms=percentile_ms(loaded, 99),
        loaded_cpu_us_per_call=load.cpu_us_per_call(),
        errors=seq.samples.errors + load.samples.errors,
        first_error=seq.samples.first_error or load.samples.first_error,
    )


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


def table(results: dict[str, PathFigures], skipped: dict[str, str], concurrency: int) -> str:
    c = str(concurrency)
    head = (
        f"{'path':<8} {'p50 ms':>7} {'p99 ms':>7} {'p50/direct':>10} {'calls/s @' + c:>12} "
        f"{'p50 ms @' + c:>11} {'p99 ms @' + c:>11} {'errors':>6}"
    )
    lines = [head, "-" * len(head)]
    for path in PATHS:
        if path in skipped:
            lines.append(f"{path:<8} skipped: {skipped[path]}")
        if path not in results:
            continue
        f = results[path]
        ratio = f"{f.p50_vs_direct:.2f}x" if not math.isnan(f.p50_vs_direct) else "-"
        lines.append(
            f"{path:<8} {f.p50_ms:>7.3f} {f.p99_ms:>7.3f} {ratio:>10} {f.throughput_calls_per_s:>12.0f} "
            f"{f.loaded_p50_ms:>11.3f} {f.loaded_p99_ms:>11.3f} {f.errors:>6}"
        )
    for title, key in (("1", "cpu_us_per_call"), (c, "loaded_cpu_us_per_call")):
        lines += ["", f"CPU time per call at concurrency {title}, microseconds, by process:"]
        for path, f in results.items():
            cpu: dict[str, float] = getattr(f, key)
            parts = [f"{name} {us:.0f}" for name, us in cpu.items() if name != "total" and us > 10]
            lines.append(f"{path:<8} total {cpu['total']:>5.0f}: {', '.join(parts)}")
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
        if "nginx" in paths:
            relay_b = await start_nginx(fleet, "nginx-b", mesh.agent, random.Random())
            targets["nginx"] = await start_nginx(fleet, "nginx-a", relay_b, random.Random())
            log(f"nginx relays: {targets['nginx']} -> {relay_b} -> agent {mesh.agent}")
        if "pyrelay" in paths:
            targets["pyrelay"] = await start_pyrelays(fleet, mesh.agent)
        invokes: dict[str, Invoke] = {}
        for path in paths:
            channel = channel_to(targets[path])
            fleet.on_exit(channel.close)
            invokes[path] = (sidecar_invoke if path == "mesh" else agent_invoke)(channel, payload)
            await first_answer(path, invokes[path], args.payload_bytes)

        log(f"warm-up: {args.warmup} calls per path")
        for path in paths:
            await sequential(invokes[path], args.warmup, Samples())
        log(f"latency at concurrency 1: {args.calls} calls per path in {args.rounds} interleaved rounds")
        seq = {path: Run(Samples(), 0.0, {}) for path in paths}
        for r in range(args.rounds):
            count = args.calls // args.rounds + (1 if r < args.calls % args.rounds else 0)
            for path in paths[r % len(paths) :] + paths[: r % len(paths)]:
                before = fleet.cpu_seconds()
                await sequential(invokes[path], count, seq[path].samples)
                for name, seconds in fleet.cpu_seconds().items():
                    seq[path].cpu_s[name] = seq[path].cpu_s.get(name, 0.0) + seconds - before.get(name, 0.0)
        loaded: dict[str, Run] = {}
        for path in paths:
            log(f"throughput of {path} at concurrency {args.concurrency} for {args.duration_s} s")
            await concurrent(invokes[path], args.concurrency, min(1.0, args.duration_s / 5))  # warm-up
            before = fleet.cpu_seconds()
            samples, elapsed = await concurrent(invokes[path], args.concurrency, args.duration_s)
            after = fleet.cpu_seconds()
            loaded[path] = Run(samples, elapsed, {k: after[k] - before.get(k, 0.0) for k in after})
        log("stopping every process")

    direct_p50 = percentile_ms(sorted(seq["direct"].samples.latencies_ns), 50) if "direct" in seq else math.nan
    results = {p: figures(seq[p], loaded[p], args.concurrency, direct_p50) for p in paths}
    report = {
        "machine": machine(nginx),
        "settings": {
            k: getattr(args, k) for k in ("calls", "warmup", "rounds", "concurrency", "duration_s", "payload_bytes")
        },
        "paths": {p: asdict(f) for p, f in results.items()},
        "skipped": skipped,
    }
    human = (
        table(results, skipped, args.concurrency) + "\n\n" + ", ".join(f"{k} {v}" for k, v in report["machine"].items())
    )
    print(human, file=sys.stderr if args.output == "json" else sys.stdout)
    if args.output == "json":
        print(json.dumps(without_nan(report), indent=2))
    failed = {p: f for p, f in results.items() if f.errors}
    for path, f in failed.items():
        log(f"{path}: {f.errors} calls failed; the first: {f.first_error}")
    return 1 if failed else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000, help="calls per path at concurrency 1")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured calls per path first")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds the calls are split into")
    parser.add_argument("--concurrency", type=int, default=16, help="callers in flight for throughput")
    parser.add_argument("--duration-s", type=float, default=5.0, help="throughput run per path, seconds")
    parser.add_argument("--payload-bytes", type=int, default=1024, help="size of the JSON payload sent")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of " + ",".join(PATHS))
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
    for name, least in (("calls", 1), ("warmup", 0), ("rounds", 1), ("concurrency", 1)):
        if getattr(args, name) < least:
            parser.error(f"--{name} must be at least {least}, got {getattr(args, name)}")
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
