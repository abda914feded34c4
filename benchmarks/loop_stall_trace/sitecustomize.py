"""Loop stall trace for benchmarks (bundle_push_p99.py --trace-stalls): never used in production.

Python imports `sitecustomize` at start-up from PYTHONPATH; with this directory on it and
MESHWARDEN_BENCH_STALL_DIR set, every `meshwarden` process records, in
$MESHWARDEN_BENCH_STALL_DIR/<pid>.jsonl:
- each asyncio callback that ran longer than 1 ms of its thread's CPU time (time.thread_time):
  the event loop was held that long whatever the machine's load, since being descheduled does
  not count, with the coroutine or callback it ran and its innermost frames sampled meanwhile;
- each garbage collection of more than 1 ms of CPU, in any thread: a collection holds the GIL,
  so every event loop of the process waits for it.
A loop lag measured in wall time on a loaded machine mixes these with the time the process
waited for a CPU; these figures do not. It patches asyncio.events.Handle._run (two clock reads
per callback) and watches from one thread that wakes every 2 ms.
"""

from __future__ import annotations

import asyncio.events
import gc
import json
import os
import sys
import threading
import time
import traceback
from typing import Any

_DIRECTORY = os.environ.get("MESHWARDEN_BENCH_STALL_DIR", "")
_CPU_S = 0.001


def _describe(handle: asyncio.events.Handle) -> str:
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    get_coro = getattr(owner, "get_coro", None)
    if get_coro is not None:
        return f"task {getattr(get_coro(), '__qualname__', '?')}"
    return getattr(callback, "__qualname__", repr(callback))[:120]


def _frames(frame: Any) -> str:
    kept = [f for f in traceback.extract_stack(frame)[-10:] if "asyncio" not in f.filename]
    return " < ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}" for f in reversed(kept[-5:]))


def _install(directory: str) -> None:
    out = open(os.path.join(directory, f"{os.getpid()}.jsonl"), "a", buffering=1)  # noqa: SIM115
    lock = threading.Lock()

    def write(record: dict[str, Any]) -> None:
        with lock:
            out.write(json.dumps(record) + "\n")

    write({"argv": sys.orig_argv})
    running: dict[str, Any] = {"handle": None, "since": 0.0, "thread": 0, "samples": []}
    original = asyncio.events.Handle._run

    def run(self: asyncio.events.Handle) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        running.update(handle=self, since=wall, thread=threading.get_ident(), samples=[])
        try:
            original(self)
        finally:
            running["handle"] = None
            held = time.thread_time() - cpu
            if held > _CPU_S:
                samples = sorted(set(running["samples"]))
                write(
                    {
                        "at": time.time(),
                        "loop_cpu_s": held,
                        "wall_s": time.perf_counter() - wall,
                        "what": _describe(self),
                        "frames": samples[:3],
                    }
                )

    asyncio.events.Handle._run = run  # type: ignore[method-assign]

    def watch() -> None:
        while True:
            time.sleep(0.002)
            handle = running["handle"]
            if handle is None or time.perf_counter() - running["since"] < 0.001:
                continue
            frame = sys._current_frames().get(running["thread"])
            if frame is not None and running["handle"] is handle:
                running["samples"].append(_frames(frame))

    threading.Thread(target=watch, daemon=True, name="stall-trace").start()
    started: dict[int, float] = {}

    def collected(phase: str, info: dict[str, int]) -> None:
        thread = threading.get_ident()
        if phase == "start":
            started[thread] = time.thread_time()
            return
        held = time.thread_time() - started.pop(thread, time.thread_time())
        if held > _CPU_S:
            write(
                {
                    "at": time.time(),
                    "gc_cpu_s": held,
                    "generation": info["generation"],
                    "thread": threading.current_thread().name,
                }
            )

    gc.callbacks.append(collected)


if _DIRECTORY and "meshwarden.cli.main" in sys.orig_argv:
    _install(_DIRECTORY)
