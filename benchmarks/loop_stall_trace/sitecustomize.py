"""Loop stall trace for benchmarks (bundle_push_p99.py --trace-stalls, --attribute-lags): never
used in production.

Python imports `sitecustomize` at start-up from PYTHONPATH; with this directory on it and
MESHWARDEN_BENCH_STALL_DIR set, every `meshwarden` process records, in
$MESHWARDEN_BENCH_STALL_DIR/<pid>.jsonl:
- each asyncio callback that ran longer than 1 ms of its thread's CPU time (time.thread_time):
  the event loop was held that long whatever the machine's load, since being descheduled does
  not count, with the coroutine or callback it ran and its innermost frames sampled meanwhile
  (the frames only with MESHWARDEN_BENCH_STALL_FRAMES=1: the sampling thread wakes every 2 ms
  and wants the GIL each time, so it is itself a cause of wall-time lag);
- each garbage collection of more than 1 ms of CPU, in any thread: a collection holds the GIL,
  so every event loop of the process waits for it;
- each loop lag over 10 ms that meshwarden.loop_lag measures (the figure the admin port exports),
  with its window in CLOCK_MONOTONIC (the clock `perf record -k CLOCK_MONOTONIC` stamps
  scheduler events with), the native id of the loop's thread, the names of the process's
  threads by native id, and what ran in and just before the window: the loop's callbacks, the
  worker threads' work items (concurrent.futures), and the collections. sched_attribution.py
  joins these with the kernel's scheduler events to say where each lag went.
A loop lag measured in wall time on a loaded machine mixes these with the time the process
waited for a CPU; the CPU-time figures do not. It patches asyncio.events.Handle._run and
concurrent.futures' work items (two clock reads each) and meshwarden.loop_lag.LoopLag.record.
"""

from __future__ import annotations

import asyncio.events
import collections
import concurrent.futures.thread
import functools
import gc
import json
import os
import sys
import threading
import time
import traceback
from typing import Any

_DIRECTORY = os.environ.get("MESHWARDEN_BENCH_STALL_DIR", "")
_FRAMES = os.environ.get("MESHWARDEN_BENCH_STALL_FRAMES", "") == "1"
_CPU_S = 0.001
_LAG_S = 0.010
_KEEP_S = 0.3  # what ran this long before a lag's window is kept with it
_NOTED_S = 0.0003  # callbacks, work items and collections shorter than this are counted, not named

# (start, end, cpu_s, what): end and start in CLOCK_MONOTONIC seconds (time.perf_counter on Linux)
Span = tuple[float, float, float, str]


def _describe(handle: asyncio.events.Handle) -> str:
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    get_coro = getattr(owner, "get_coro", None)
    if get_coro is not None:
        return f"task {getattr(get_coro(), '__qualname__', '?')}"
    return getattr(callback, "__qualname__", repr(callback))[:120]


def _describe_work(fn: Any, args: tuple[Any, ...]) -> str:
    """asyncio.to_thread submits functools.partial(context.run, func, ...): name func."""
    if isinstance(fn, functools.partial):
        fn, args = fn.func, fn.args
    if getattr(fn, "__qualname__", "") == "Context.run" and args:
        fn = args[0]
        if isinstance(fn, functools.partial):
            fn = fn.func
    return str(getattr(fn, "__qualname__", repr(fn)))[:120]


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
    callbacks: collections.deque[Span] = collections.deque(maxlen=20000)
    work: collections.deque[tuple[int, float, float, float, str]] = collections.deque(maxlen=5000)
    collections_made: collections.deque[tuple[int, float, float, float, int]] = collections.deque(maxlen=2000)
    original = asyncio.events.Handle._run

    def run(self: asyncio.events.Handle) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        running.update(handle=self, since=wall, thread=threading.get_ident(), samples=[])
        try:
            original(self)
        finally:
            running["handle"] = None
            end = time.perf_counter()
            held = time.thread_time() - cpu
            callbacks.append((wall, end, held, _describe(self) if end - wall > _NOTED_S else ""))
            if held > _CPU_S:
                samples = sorted(set(running["samples"]))
                write(
                    {
                        "at": time.time(),
                        "loop_cpu_s": held,
                        "wall_s": end - wall,
                        "what": _describe(self),
                        "frames": samples[:3],
                    }
                )
            if not patched_lag and "meshwarden.loop_lag" in sys.modules:
                _patch_loop_lag()

    asyncio.events.Handle._run = run  # type: ignore[method-assign]

    original_work = concurrent.futures.thread._WorkItem.run

    in_flight: dict[int, tuple[float, Any, tuple[Any, ...]]] = {}

    def run_work(self: Any) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        tid = threading.get_native_id()
        in_flight[tid] = (wall, self.fn, self.args)
        try:
            original_work(self)
        finally:
            in_flight.pop(tid, None)
            end = time.perf_counter()
            if end - wall > _NOTED_S:
                what = _describe_work(self.fn, self.args)
                work.append((tid, wall, end, time.thread_time() - cpu, what))

    concurrent.futures.thread._WorkItem.run = run_work  # type: ignore[method-assign]

    patched_lag = False

    def _patch_loop_lag() -> None:
        nonlocal patched_lag
        patched_lag = True
        lag_class = getattr(sys.modules["meshwarden.loop_lag"], "LoopLag", None)
        original_record = getattr(lag_class, "record", None)
        if lag_class is None or original_record is None:
            return

        def record(self: Any, lag_s: float) -> None:
            original_record(self, lag_s)
            if lag_s > _LAG_S:
                end = time.perf_counter()
                write(_lag_record(lag_s, end))

        lag_class.record = record

    def _lag_record(lag_s: float, end: float) -> dict[str, Any]:
        since = end - lag_s - _KEEP_S
        return {
            "at": time.time(),
            "lag_s": lag_s,
            "window": [end - lag_s, end],
            "loop_tid": threading.get_native_id(),
            "threads": {str(t.native_id): t.name for t in threading.enumerate()},
            "callbacks": [c for c in list(callbacks) if c[1] >= since],
            "work": [w for w in list(work) if w[2] >= since]
            + [(tid, at, end, 0.0, _describe_work(fn, args)) for tid, (at, fn, args) in list(in_flight.items())],
            "collections": [c for c in list(collections_made) if c[2] >= since],
        }

    if _FRAMES:

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
    started: dict[int, tuple[float, float]] = {}

    def collected(phase: str, info: dict[str, int]) -> None:
        thread = threading.get_ident()
        if phase == "start":
            started[thread] = (time.perf_counter(), time.thread_time())
            return
        wall, cpu = started.pop(thread, (time.perf_counter(), time.thread_time()))
        end, held = time.perf_counter(), time.thread_time() - cpu
        if end - wall > _NOTED_S:
            collections_made.append((threading.get_native_id(), wall, end, held, info["generation"]))
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
