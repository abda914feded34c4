"""Latency and throughput of one unary call: direct, through the mesh, through two nginx relays.

    PYTHONPATH=. .venv/bin/python benchmarks/latency.py [--calls 2000] [--concurrency 16]
        [--payload-bytes 1024] [--duration-s 5] [--paths direct,mesh,nginx] [--output json]

Paths, all on loopback, all ending at the same echo agent process (examples/echo_agent.py):
  direct  client -> agent (meshwarden.v1.Agent/Handle)
  mesh    client -> sidecar A -> sidecar B -> agent (meshwarden.v1.Sidecar/Invoke; a real
          registry, two real sidecars, a real agent, each its own process)
  nginx   client -> nginx A -> nginx B -> agent (grpc_pass, cleartext HTTP/2), only when
          `nginx` is on PATH: the plain-proxy reference for two relays in series.

The load generator is this process's own asyncio loop (grpc.aio), the same client code for
every path; README.md says why. Latency is measured at concurrency 1 in interleaved rounds
(the paths take turns, so a noisy neighbour slows all of them alike); throughput at
--concurrency for --duration-s per path. Every child runs in its own session and is
stopped at the end, on error, on Ctrl-C and on SIGTERM alike.

One file rather than a package: it is a script run by path, and each part (processes,
nginx, load, report) is used only here. Sections below follow the order of a run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

try:
    import grpc

    from meshwarden.supervise import Child, StartError, meshwarden_argv, start, wait_serving
    from meshwarden.v1 import agent_pb2, agent_pb2_grpc, sidecar_pb2, sidecar_pb2_grpc
except ModuleNotFoundError as exc:  # run from a checkout without PYTHONPATH
    sys.exit(
        f"latency.py: cannot import {exc.name}; run it with the project's venv and "
        "PYTHONPATH=<repo root>, or install the project into the venv"
    )

REPO = Path(__file__).resolve().parent.parent
ECHO_AGENT = REPO / "examples" / "echo_agent.py"
PATHS = ("direct", "mesh", "nginx")
CALL_TIMEOUT_S = 10.0
MESH_READY_TIMEOUT_S = 30.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# nginx cannot bind port 0 and report it, so its ports are tried from this range, below
# Linux's ephemeral range (32768-60999) where the port-0 binds of the other servers land.
NGINX_PORTS = range(20000, 32000)
NGINX_BIND_ATTEMPTS = 20
NGINX_READY_TIMEOUT_S = 10.0


class BenchError(RuntimeError):
    """The benchmark could not set up or run a path; the message says which and why."""


# ---------------------------------------------------------------------------- processes


@dataclass
class Processes:
    """Every child this run started, by process group, so that even a second Ctrl-C (which
    interrupts the asyncio clean-up) leaves nothing behind: `kill_leftovers` runs last."""

    groups: set[int] = field(default_factory=set)

    def track(self, pid: int) -> None:
        self.groups.add(pid)  # started with start_new_session: pid == process group id

    def done(self, pid: int) -> None:
        self.groups.discard(pid)

    def kill_leftovers(self) -> None:
        for group in sorted(self.groups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        self.groups.clear()


async def start_child(
    stack: contextlib.AsyncExitStack, procs: Processes, name: str, argv: Sequence[str], logs: Path
) -> Child:
    child = await start(name, argv, log_dir=logs)
    procs.track(child.process.pid)

    async def stop() -> None:
        code = await child.stop()
        procs.done(child.process.pid)
        if code not in (0, -signal.SIGTERM):
            log(f"{name} exited with {code}; its log is {child.stderr_path}")

    stack.push_async_callback(stop)
    return child


@dataclass
class Mesh:
    agent: str  # the echo agent's callback address (meshwarden.v1.Agent)
    caller_sidecar: str  # sidecar A's local API (meshwarden.v1.Sidecar)


async def start_mesh(stack: contextlib.AsyncExitStack, procs: Processes, work: Path) -> Mesh:
    logs = work / "logs"
    registry = await start_child(
        stack,
        procs,
        "registry",
        meshwarden_argv("registry", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(work / "registry")),
        logs,
    )
    callee = await start_child(
        stack,
        procs,
        "sidecar-b",
        meshwarden_argv(
            "sidecar",
            "run",
            "--agent",
            "echo",
            "--instance-id",
            "echo-1",
            "--registry",
            registry.addresses["listen"],
            "--listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:0",
        ),
        logs,
    )
    agent = await start_child(
        stack,
        procs,
        "echo-agent",
        [
            sys.executable,
            str(ECHO_AGENT),
            "--sidecar",
            callee.addresses["listen"],
            "--listen",
            "127.0.0.1:0",
            "--version",
            "1.0.0",
            "--announce",
        ],
        logs,
    )
    caller = await start_child(
        stack,
        procs,
        "sidecar-a",
        meshwarden_argv(
            "sidecar",
            "run",
            "--agent",
            "bench-client",
            "--instance-id",
            "bench-client-1",
            "--registry",
            registry.addresses["listen"],
            "--listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:0",
        ),
        logs,
    )
    return Mesh(agent=agent.addresses["listen"], caller_sidecar=caller.addresses["listen"])


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
    # the defaults (1000 requests per connection) would make every client reconnect
    # every 1000 calls, and nginx would open a new upstream connection per call
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
            grpc_read_timeout 60s;
        }}
    }}
}}
"""


def nginx_unavailable() -> str | None:
    """Why the nginx path cannot run here, or None when it can."""
    if shutil.which("nginx") is None:
        return "nginx is not on PATH (apt-get install nginx-light, then run again)"
    return None


def nginx_version(binary: str) -> str:
    import subprocess

    done = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ")


async def start_nginx(
    stack: contextlib.AsyncExitStack,
    procs: Processes,
    name: str,
    upstream: str,
    work: Path,
    rng: random.Random,
) -> str:
    """Starts one nginx relay to `upstream`; returns its listen address.

    nginx cannot report a port it chose, so this tries ports of NGINX_PORTS from a random
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
        conf_dir = work / f"{name}-{port}"
        conf_dir.mkdir(parents=True)
        conf_dir.chmod(0o755)  # as root, nginx's workers run as nobody
        conf = conf_dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=conf_dir, upstream=upstream, listen=listen))
        error_log = conf_dir / "error.log"
        with (conf_dir / "stderr.log").open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                binary,
                "-p",
                str(conf_dir),
                "-c",
                str(conf),
                "-e",
                str(error_log),
                "-g",
                "daemon off;",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        procs.track(process.pid)
        stack.push_async_callback(stop_nginx, process, procs)
        if await nginx_bound(process, error_log):
            await asyncio.wait_for(wait_serving(listen), NGINX_READY_TIMEOUT_S)
            return listen
        text = read_text(error_log) + read_text(conf_dir / "stderr.log")
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


async def stop_nginx(process: asyncio.subprocess.Process, procs: Processes) -> None:
    """SIGTERM (nginx's fast shutdown) to the group, then SIGKILL after 5 s."""
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
    procs.done(process.pid)


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------------- load


Invoke = Callable[[], Awaitable[int]]  # makes one call; returns the result's size in bytes


def payload_of(size: int) -> bytes:
    """A JSON object of exactly `size` bytes: {"data":"xxx..."}."""
    frame = b'{"data":""}'
    if size < len(frame):
        raise BenchError(f"--payload-bytes must be at least {len(frame)}, got {size}")
    return frame[:-2] + b"x" * (size - len(frame)) + frame[-2:]


def agent_invoke(channel: grpc.aio.Channel, payload: bytes) -> Invoke:
    """meshwarden.v1.Agent/Handle, as the callee sidecar would call it."""
    handle = agent_pb2_grpc.AgentStub(channel).Handle
    delivery = agent_pb2.Delivery(
        call_id="bench", capability="echo", payload_json=payload, caller_agent="bench-client", attempt=1
    )

    async def invoke() -> int:
        reply = await handle(delivery, timeout=CALL_TIMEOUT_S)
        return len(reply.result_json)

    return invoke


def sidecar_invoke(channel: grpc.aio.Channel, payload: bytes) -> Invoke:
    """meshwarden.v1.Sidecar/Invoke, as the SDK's Client.invoke calls it."""
    call = sidecar_pb2_grpc.SidecarStub(channel).Invoke
    request = sidecar_pb2.InvokeRequest(capability="echo", payload_json=payload)

    async def invoke() -> int:
        reply = await call(request, timeout=CALL_TIMEOUT_S)
        return len(reply.result_json)

    return invoke


def channel_to(address: str) -> grpc.aio.Channel:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    return grpc.aio.insecure_channel(address, options=options)


async def until_answers(path: str, invoke: Invoke, payload_bytes: int, timeout_s: float) -> None:
    """Calls until one call succeeds (the mesh answers once sidecar A's catalog has the
    echo agent) and checks that the answer carries the payload back."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            size = await invoke()
        except grpc.aio.AioRpcError as err:
            if time.monotonic() > deadline:
                raise BenchError(f"{path}: no answer within {timeout_s} s: {err.code().name}: {err.details()}") from err
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
    Returns the samples and the elapsed time, up to the last call's answer."""
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
    rank = max(math.ceil(q / 100 * len(sorted_ns)), 1)
    return sorted_ns[rank - 1] / 1e6


@dataclass
class PathFigures:
    calls: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    p50_vs_direct: float
    concurrency: int
    throughput_calls_per_s: float
    throughput_calls: int
    loaded_p50_ms: float
    loaded_p99_ms: float
    errors: int
    first_error: str


def figures(seq: Samples, load: Samples, elapsed_s: float, concurrency: int, direct_p50: float) -> PathFigures:
    lat, loaded = sorted(seq.latencies_ns), sorted(load.latencies_ns)
    p50 = percentile_ms(lat, 50)
    return PathFigures(
        calls=len(lat),
        p50_ms=p50,
        p99_ms=percentile_ms(lat, 99),
        mean_ms=(sum(lat) / len(lat) / 1e6) if lat else math.nan,
        max_ms=(lat[-1] / 1e6) if lat else math.nan,
        p50_vs_direct=p50 / direct_p50 if direct_p50 > 0 else math.nan,
        concurrency=concurrency,
        throughput_calls_per_s=len(loaded) / elapsed_s if elapsed_s > 0 else math.nan,
        throughput_calls=len(loaded),
        loaded_p50_ms=percentile_ms(loaded, 50),
        loaded_p99_ms=percentile_ms(loaded, 99),
        errors=seq.errors + load.errors,
        first_error=seq.first_error or load.first_error,
    )


def machine(nginx: str | None) -> dict[str, str]:
    model = ""
    for line in read_text(Path("/proc/cpuinfo")).splitlines():
        if line.startswith("model name"):
            model = line.partition(":")[2].strip()
            break
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu_model": model or platform.processor() or "unknown",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "nginx": nginx or "not used",
    }


def table(results: dict[str, PathFigures], skipped: dict[str, str], concurrency: int) -> str:
    head = (
        f"{'path':<7} {'p50 ms':>8} {'p99 ms':>8} {'p50/direct':>10} "
        f"{'calls/s @' + str(concurrency):>13} {'p50 ms @' + str(concurrency):>12} "
        f"{'p99 ms @' + str(concurrency):>12} {'errors':>6}"
    )
    lines = [head, "-" * len(head)]
    for path in PATHS:
        if path in results:
            f = results[path]
            lines.append(
                f"{path:<7} {f.p50_ms:>8.3f} {f.p99_ms:>8.3f} {f.p50_vs_direct:>9.2f}x "
                f"{f.throughput_calls_per_s:>13.0f} {f.loaded_p50_ms:>12.3f} "
                f"{f.loaded_p99_ms:>12.3f} {f.errors:>6}"
            )
        elif path in skipped:
            lines.append(f"{path:<7} skipped: {skipped[path]}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- run


def log(text: str) -> None:
    print(f"[latency] {text}", file=sys.stderr, flush=True)


async def measure(args: argparse.Namespace, work: Path, procs: Processes) -> int:
    paths: list[str] = args.paths
    skipped: dict[str, str] = {}
    nginx_binary_version: str | None = None
    if "nginx" in paths:
        reason = nginx_unavailable()
        if reason is not None:
            skipped["nginx"] = reason
            paths = [p for p in paths if p != "nginx"]
            log(f"nginx path skipped: {reason}")
        else:
            nginx_binary_version = nginx_version(shutil.which("nginx") or "nginx")
    payload = payload_of(args.payload_bytes)
    rng = random.Random()

    async with contextlib.AsyncExitStack() as stack:
        log(f"starting the registry, two sidecars and the echo agent (logs in {work / 'logs'})")
        mesh = await start_mesh(stack, procs, work)
        targets = {"direct": mesh.agent, "mesh": mesh.caller_sidecar}
        if "nginx" in paths:
            relay_b = await start_nginx(stack, procs, "nginx-b", mesh.agent, work / "nginx", rng)
            targets["nginx"] = await start_nginx(stack, procs, "nginx-a", relay_b, work / "nginx", rng)
            log(f"nginx relays: {targets['nginx']} -> {relay_b} -> agent {mesh.agent}")
        invokes: dict[str, Invoke] = {}
        for path in paths:
            channel = channel_to(targets[path])
            stack.push_async_callback(channel.close)
            maker = sidecar_invoke if path == "mesh" else agent_invoke
            invokes[path] = maker(channel, payload)
            await until_answers(path, invokes[path], args.payload_bytes, MESH_READY_TIMEOUT_S)

        log(f"warm-up: {args.warmup} calls per path")
        for path in paths:
            await sequential(invokes[path], args.warmup, Samples())
        seq = {path: Samples() for path in paths}
        per_round = [args.calls // args.rounds + (1 if r < args.calls % args.rounds else 0) for r in range(args.rounds)]
        log(f"latency at concurrency 1: {args.calls} calls per path in {args.rounds} interleaved rounds")
        for r, count in enumerate(per_round):
            order = paths[r % len(paths) :] + paths[: r % len(paths)]
            for path in order:
                await sequential(invokes[path], count, seq[path])
        loaded: dict[str, tuple[Samples, float]] = {}
        for path in paths:
            log(f"throughput of {path} at concurrency {args.concurrency} for {args.duration_s} s")
            await concurrent(invokes[path], args.concurrency, min(1.0, args.duration_s / 5))
            loaded[path] = await concurrent(invokes[path], args.concurrency, args.duration_s)
        log("stopping every process")

    direct_p50 = percentile_ms(sorted(seq["direct"].latencies_ns), 50) if "direct" in seq else math.nan
    results = {p: figures(seq[p], *loaded[p], args.concurrency, direct_p50) for p in paths}
    report = {
        "machine": machine(nginx_binary_version),
        "settings": {
            "calls": args.calls,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "duration_s": args.duration_s,
            "payload_bytes": args.payload_bytes,
        },
        "paths": {p: asdict(f) for p, f in results.items()},
        "skipped": skipped,
    }
    human = table(results, skipped, args.concurrency)
    details = ", ".join(f"{k} {v}" for k, v in report["machine"].items())
    if args.output == "json":
        print(human + "\n" + details, file=sys.stderr)
        print(json.dumps(report, indent=2))
    else:
        print(human + "\n" + details)
    failed = {p: f for p, f in results.items() if f.errors}
    for path, f in failed.items():
        log(f"{path}: {f.errors} calls failed; first: {f.first_error}")
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
    for name in ("calls", "warmup", "rounds", "concurrency"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            parser.error(f"--{name} must be at least {0 if name == 'warmup' else 1}")
    if args.rounds > args.calls:
        parser.error("--rounds must not exceed --calls")
    if args.duration_s <= 0:
        parser.error("--duration-s must be positive")
    return args


async def run(args: argparse.Namespace, work: Path, procs: Processes) -> int:
    """`measure`, cancelled cleanly (every child stopped) on SIGTERM as on Ctrl-C."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await measure(args, work, procs)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="meshwarden-bench-"))
    work.chmod(0o711)  # nginx workers (nobody, when run as root) reach their own directories
    procs = Processes()
    keep = args.keep_logs
    try:
        return asyncio.run(run(args, work, procs))
    except (BenchError, StartError, TimeoutError) as exc:
        log(f"failed: {exc}")
        keep = True
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted; every process stopped")
        return 130
    finally:
        procs.kill_leftovers()
        if keep:
            log(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
