"""Where each wall-time loop lag over 10 ms went, from the kernel's scheduler events.

A lag the loop-lag probe measures is the time between the moment its sleep was due and the
moment its task ran again. Over that window the loop's thread was, at each instant, either
running (doing the loop's work), runnable but without a core (waiting for a CPU), or asleep.
Asleep past a due timer means it waited for something held by another thread; in a Python
process that is the GIL (or a lock), and the thread that woke it is the one that let go. So
with every context switch and wake-up of the machine (`perf record -e sched:sched_switch -e
sched:sched_waking -a -k CLOCK_MONOTONIC`, root) and the lag records of loop_stall_trace (the
window, the loop's thread, the names of the threads, the work items the workers ran), each lag
splits into:
- loop running: its callbacks (named, with their CPU time, from the lag record);
- loop waiting for a core: and which processes held the cores meanwhile ("idle" if one was free);
- waiting for <thread>: asleep until that thread of the same process woke it (the GIL, or a
  lock), split into the time that thread ran and the time it waited for a core itself, with the
  work item it was running;
- asleep otherwise: woken by I/O, a timer or another process.
The largest part names the lag's cause. Used by bundle_push_p99.py --attribute-lags.
"""

from __future__ import annotations

import bisect
import json
import re
import shutil
import signal
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_LINE = re.compile(r"^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+(\d+\.\d+):\s+(\w+):(\w+):\s+(.*)$")
_SWITCH = re.compile(r"prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)")
_WAKING = re.compile(r"pid=(\d+)")
_SYSCALL = re.compile(r"NR (\d+)")

RUN, READY, SLEEP = "run", "ready", "sleep"
FUTEX = 202  # x86-64 syscall numbers: where a sleeping loop thread was
SELECTOR = {7: "poll", 232: "epoll_wait", 281: "epoll_pwait", 441: "epoll_pwait2"}


@dataclass(frozen=True, slots=True)
class Interval:
    start: float
    end: float
    state: str  # RUN, READY or SLEEP
    waker: int = 0  # SLEEP: the thread that woke it (or the one that ran when an interrupt did)
    syscall: int = -1  # SLEEP of a loop thread: the system call it slept in (-1: not traced)


@dataclass(slots=True)
class Schedule:
    """Per watched thread, its run/ready/sleep intervals; per CPU, who ran from when."""

    threads: dict[int, list[Interval]] = field(default_factory=lambda: defaultdict(list))
    cpus: dict[int, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    comms: dict[int, str] = field(default_factory=dict)


def start_recording(output: Path, loop_threads: Sequence[int]) -> subprocess.Popen[bytes]:
    """Starts recording every context switch and wake-up of the machine, and the system calls
    of `loop_threads` (needs root)."""
    if shutil.which("perf") is None:
        raise RuntimeError("--attribute-lags needs `perf` (Debian: linux-perf) and root, for the scheduler's events")
    only = " || ".join(f"common_pid == {tid}" for tid in loop_threads)
    argv = ["perf", "record", "-q", "-a", "-m", "2048", "-k", "CLOCK_MONOTONIC", "-o", str(output)]
    argv += ["-e", "sched:sched_switch", "-e", "sched:sched_waking"]
    argv += ["-e", "raw_syscalls:sys_enter", "--filter", only, "-e", "raw_syscalls:sys_exit", "--filter", only]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_recording(recording: subprocess.Popen[bytes]) -> None:
    recording.send_signal(signal.SIGINT)
    _, stderr = recording.communicate(timeout=60)
    if recording.returncode not in (0, -signal.SIGINT):
        raise RuntimeError(f"perf record failed ({recording.returncode}): {stderr.decode()[-2000:]}")


def read_schedule(recorded: Path, watched: set[int]) -> Schedule:
    """Parses `perf script` of a recording; keeps thread timelines of `watched` tids only."""
    text = subprocess.run(
        ["perf", "script", "--ns", "-i", str(recorded)], capture_output=True, text=True, check=True
    ).stdout
    schedule = Schedule()
    open_since: dict[int, tuple[float, str, int]] = {}  # tid: since, state, syscall slept in
    in_syscall: dict[int, int] = {}

    def close(tid: int, at: float, new_state: str, waker: int = 0) -> None:
        since = open_since.get(tid)
        if since is not None and at > since[0]:
            sleeping = since[1] == SLEEP
            interval = Interval(since[0], at, since[1], waker if sleeping else 0, since[2] if sleeping else -1)
            schedule.threads[tid].append(interval)
        open_since[tid] = (at, new_state, in_syscall.get(tid, -1))

    for line in text.splitlines():
        found = _LINE.match(line)
        if found is None:
            continue
        comm, current, cpu, at, _, event, rest = found.groups()
        when, tid = float(at), int(current)
        schedule.comms.setdefault(tid, comm)
        if event == "sched_switch":
            switch = _SWITCH.search(rest)
            if switch is None:
                continue
            prev, prev_state, next_comm, following = switch.groups()
            schedule.cpus[int(cpu)].append((when, int(following)))
            schedule.comms.setdefault(int(following), next_comm)
            if int(prev) in watched:
                close(int(prev), when, READY if prev_state.startswith("R") else SLEEP)
            if int(following) in watched:
                close(int(following), when, RUN)
        elif event == "sched_waking":
            woken = _WAKING.search(rest)
            if woken is None:
                continue
            target = int(woken.group(1))
            if target in watched and open_since.get(target, (0.0, "", -1))[1] == SLEEP:
                close(target, when, READY, waker=tid)
        elif event == "sys_enter":
            number = _SYSCALL.search(rest)
            if number is not None:
                in_syscall[tid] = int(number.group(1))
        elif event == "sys_exit":
            in_syscall.pop(tid, None)
    return schedule


def _clipped(intervals: Sequence[Interval], start: float, end: float) -> Iterator[tuple[Interval, float, float]]:
    """The intervals (in time order) that overlap [start, end], with their overlap."""
    index = bisect.bisect_left(intervals, start, key=lambda interval: interval.end)
    while index < len(intervals) and intervals[index].start < end:
        interval = intervals[index]
        if interval.end > start:
            yield interval, max(start, interval.start), min(end, interval.end)
        index += 1


def _core_holders(schedule: Schedule, start: float, end: float, names: Mapping[int, str]) -> dict[str, float]:
    """Who ran on each CPU in [start, end], in ms, by process (ours by name) or command."""
    held: defaultdict[str, float] = defaultdict(float)
    for switches in schedule.cpus.values():
        index = max(0, bisect.bisect_right(switches, (start, 1 << 62)) - 1)
        while index < len(switches) and switches[index][0] < end:
            since, tid = switches[index]
            until = switches[index + 1][0] if index + 1 < len(switches) else end
            overlap = min(end, until) - max(start, since)
            if overlap > 0:
                label = "idle" if tid == 0 else names.get(tid, schedule.comms.get(tid, str(tid)))
                held[label] += overlap * 1000
            index += 1
    return held


def _time_in(intervals: Sequence[Interval], start: float, end: float) -> dict[str, float]:
    spent: defaultdict[str, float] = defaultdict(float)
    for interval, lo, hi in _clipped(intervals, start, end):
        spent[interval.state] += (hi - lo) * 1000
    return spent


def attribute_lag(lag: Mapping[str, Any], schedule: Schedule, process: str, names: Mapping[int, str]) -> dict[str, Any]:
    """One lag record of loop_stall_trace, split by what the loop's thread was doing (ms)."""
    start, end = lag["window"]
    loop = int(lag["loop_tid"])
    threads = {int(tid): name for tid, name in lag["threads"].items()}
    own = set(threads) | {tid for tid, name in names.items() if name.startswith(f"{process}:")}
    parts: defaultdict[str, float] = defaultdict(float)
    holders: defaultdict[str, float] = defaultdict(float)
    holder_cores: defaultdict[str, float] = defaultdict(float)  # while the thread the loop waited for waited for a core
    waited_for: dict[str, str] = {}
    segments = list(_clipped(schedule.threads.get(loop, []), start, end))
    timeline = []
    for index, (interval, lo, hi) in enumerate(segments):
        ms = (hi - lo) * 1000
        if interval.state == RUN:
            label = "loop running"
        elif interval.state == READY:
            label = "loop waiting for a core"
            for occupant, held_ms in _core_holders(schedule, lo, hi, names).items():
                holders[occupant] += held_ms
        elif interval.syscall in SELECTOR:
            label = f"loop idle in {SELECTOR[interval.syscall]}"
        elif interval.syscall == FUTEX:
            holder = _lock_holder(segments[index:], loop, own)
            if holder is None:
                label = "waiting for the GIL or a lock (holder not seen)"
            else:
                name = threads.get(holder) or names.get(holder, str(holder))
                spent = _time_in(schedule.threads.get(holder, []), lo, hi)
                ran, ready = spent.get(RUN, 0.0), spent.get(READY, 0.0)
                for wait, w_lo, w_hi in _clipped(schedule.threads.get(holder, []), lo, hi):
                    if wait.state == READY:
                        for occupant, held_ms in _core_holders(schedule, w_lo, w_hi, names).items():
                            holder_cores[occupant] += held_ms
                parts[f"waiting for the GIL or a lock held by {name} (it ran)"] += ran
                parts[f"waiting for the GIL or a lock held by {name} (it waited for a core)"] += ready
                label = f"waiting for the GIL or a lock held by {name} (it slept)"
                ms = max(0.0, ms - ran - ready)
                waited_for[name] = _work_of(lag, holder, lo, hi)
        else:
            label = (
                f"asleep in system call {interval.syscall}"
                if interval.syscall >= 0
                else "asleep (system call not traced)"
            )
        parts[label] += ms
        timeline.append([round((lo - start) * 1000, 2), round((hi - lo) * 1000, 2), label])
    covered = (sum(hi - lo for _, lo, hi in segments)) * 1000
    parts["no scheduler event"] += max(0.0, (end - start) * 1000 - covered)
    callbacks = [c for c in lag["callbacks"] if c[1] > start and c[0] < end]
    longest = max(callbacks, key=lambda c: c[2], default=None)
    collections = [c for c in lag["collections"] if c[2] > start and c[1] < end]
    cause = max(parts.items(), key=lambda item: item[1])[0] if parts else "?"
    return {
        "process": process,
        "lag_ms": round(lag["lag_s"] * 1000, 1),
        "cause": cause,
        "parts_ms": {k: round(v, 1) for k, v in sorted(parts.items(), key=lambda kv: -kv[1]) if v >= 0.1},
        "cores_held_by_ms": {k: round(v, 1) for k, v in sorted(holders.items(), key=lambda kv: -kv[1])[:4]},
        "worker_work": waited_for,
        "cores_held_while_it_waited_ms": {
            k: round(v, 1) for k, v in sorted(holder_cores.items(), key=lambda kv: -kv[1])[:4]
        },
        "loop_callbacks": len(callbacks),
        "loop_callbacks_cpu_ms": round(sum(c[2] for c in callbacks) * 1000, 1),
        "longest_callback": f"{longest[3] or '?'} {longest[2] * 1000:.1f} ms CPU" if longest else "",
        "collections": [
            f"generation {c[4]} {(c[2] - c[1]) * 1000:.1f} ms in {threads.get(c[0], c[0])}" for c in collections
        ],
        "timeline": timeline,
    }


def _lock_holder(following: Sequence[tuple[Interval, float, float]], loop: int, own: set[int]) -> int | None:
    """Who let go of what the loop's thread waits for in the first of `following` (a futex
    sleep): the thread of its own process that woke it, there or, when that wait timed out (the
    GIL's waits last a switch interval each), at the end of the next waits of the chain."""
    for interval, lo, hi in following:
        if interval.state == SLEEP and interval.syscall == FUTEX:
            if interval.waker in own and interval.waker != loop:
                return interval.waker
        elif interval.state == RUN and hi - lo > 0.0005:
            return None
        elif interval.state == SLEEP:
            return None
    return None


def _work_of(lag: Mapping[str, Any], tid: int, start: float, end: float) -> str:
    """The work items thread `tid` ran over [start, end] (named, from the lag record)."""
    items = [w for w in lag["work"] if w[0] == tid and w[2] > start and w[1] < end]
    return (
        ", ".join(sorted({str(w[4]) for w in items}))
        or "no work item recorded (not a concurrent.futures worker, or under 0.3 ms)"
    )


def lag_records(directory: Path, pid: int, since: float, until: float) -> list[dict[str, Any]]:
    """The lag records of process `pid` whose window ends within [since, until] (monotonic)."""
    path = directory / f"{pid}.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    return [r for r in records if "lag_s" in r and since <= r["window"][1] <= until]


def summarize(attributed: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per process: how many lags over 10 ms, the longest, how many each cause explains (the
    largest part of a lag), and the milliseconds of all of them by kind of cause."""
    by_process: dict[str, dict[str, Any]] = {}
    for lag in attributed:
        entry = by_process.setdefault(
            lag["process"], {"lags_over_10ms": 0, "longest_ms": 0.0, "causes": Counter(), "ms_by_kind": {}}
        )
        entry["lags_over_10ms"] += 1
        entry["longest_ms"] = max(entry["longest_ms"], lag["lag_ms"])
        entry["causes"][_kind(lag["cause"])] += 1
        for part, ms in lag["parts_ms"].items():
            kind = kind_of(part)
            entry["ms_by_kind"][kind] = round(entry["ms_by_kind"].get(kind, 0.0) + ms, 1)
    return {name: {**entry, "causes": dict(entry["causes"])} for name, entry in by_process.items()}


def kind_of(part: str) -> str:
    """The kind of a part of a lag: the loop's work, a core, the GIL (by what its holder did), or else."""
    if part == "loop running":
        return "loop running"
    if part == "loop waiting for a core":
        return "loop waiting for a core"
    if part.startswith("waiting for the GIL"):
        if part.endswith("(it ran)"):
            return "GIL: holder running"
        if part.endswith("(it waited for a core)"):
            return "GIL: holder waiting for a core"
        return "GIL: holder not running"
    return "loop asleep otherwise"


def _kind(cause: str) -> str:
    """A cause without the thread's own name's number (asyncio_3 -> asyncio_N)."""
    return re.sub(r"_\d+\b", "_N", cause)
