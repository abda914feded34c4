"""How long the CLI takes to answer before it does any work: start-up is imports and parser.

    .venv/bin/python benchmarks/cli_startup.py [--runs 21] [--output table|json]

Runs each command `--runs` times as a fresh process (the `meshwarden` script beside this
Python, as an operator runs it) and reports the median and slowest wall time and the peak
resident memory of one run (from `os.wait4`). The commands print help and exit, so the
figures are what every command pays before it starts talking to a registry. A bare
`import meshwarden`, what an agent process pays before it touches the SDK, and the bare
interpreter (the floor no command can go below) are measured alongside. Other
load on the machine inflates the figures: `other work` says how many cores were busy
meanwhile (from /proc/stat, minus this script's children).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "meshwarden"
COMMANDS: dict[str, list[str]] = {
    "meshwarden --help": [str(SCRIPT), "--help"],
    "meshwarden agents list --help": [str(SCRIPT), "agents", "list", "--help"],
    "python -c 'import meshwarden'": [sys.executable, "-c", "import meshwarden"],
    "python -c pass (the floor)": [sys.executable, "-c", "pass"],
}


@dataclass(frozen=True)
class Figures:
    command: str
    runs: int
    median_ms: float
    slowest_ms: float
    peak_rss_mib: float


def _one_run(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS in MiB of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode() if process.stderr else ""
    if process.returncode != 0:
        sys.exit(f"cli_startup.py: {' '.join(argv)} exited {process.returncode}: {stderr.strip()}")
    return elapsed, usage.ru_maxrss / 1024


def measure(name: str, argv: list[str], runs: int) -> Figures:
    _one_run(argv)  # warm the page cache and the bytecode cache
    samples = [_one_run(argv) for _ in range(runs)]
    walls = [wall for wall, _ in samples]
    return Figures(
        command=name,
        runs=runs,
        median_ms=round(statistics.median(walls) * 1000, 1),
        slowest_ms=round(max(walls) * 1000, 1),
        peak_rss_mib=round(max(rss for _, rss in samples), 1),
    )


def _busy_cores(before: tuple[int, int], after: tuple[int, int], own_ticks: int) -> float:
    busy = after[0] - before[0] - own_ticks
    return round(max(busy, 0) / max(after[1] - before[1], 1) * (os.cpu_count() or 1), 2)


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all cores from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _children_ticks() -> int:
    times = os.times()
    return round((times.children_user + times.children_system) * os.sysconf("SC_CLK_TCK"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--output", choices=["table", "json"], default="table")
    args = parser.parse_args()
    if not SCRIPT.exists():
        sys.exit(f"cli_startup.py: no {SCRIPT}; run it with the project's venv (python3 dev.py test installs it)")
    before, own_before = _cpu_ticks(), _children_ticks()
    figures = [measure(name, argv, args.runs) for name, argv in COMMANDS.items()]
    other = _busy_cores(before, _cpu_ticks(), _children_ticks() - own_before)
    if args.output == "json":
        print(json.dumps({"figures": [asdict(f) for f in figures], "other_work_cores": other}, indent=2))
        return 0
    print(f"{'command':<34} {'runs':>5} {'median ms':>10} {'slowest ms':>11} {'peak RSS MiB':>13}")
    for f in figures:
        print(f"{f.command:<34} {f.runs:>5} {f.median_ms:>10} {f.slowest_ms:>11} {f.peak_rss_mib:>13}")
    print(f"other work meanwhile: {other} cores busy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
