"""Did a change make the sidecar costlier? Runs the benchmarks, prints the ratios, compares them
with the budget recorded in benchmarks/budget.json, and exits 1 when one is worse than its budget
by more than the run-to-run noise measured for it.

    PYTHONPATH=. .venv/bin/python benchmarks/check.py [--budget benchmarks/budget.json]
        [--no-memory] [--output json]

For people, before and after a change on the call path; not part of the test suite (it takes
about two minutes and wants a quiet machine). One run of latency.py (paths direct, mesh and
pyrelay-mtls, shortened) gives the ratios, each from one run, so a machine that is slower or
busier slows both sides alike:

  mesh_p50_over_direct        mesh p50 / direct p50 at concurrency 1          (lower is better)
  mesh_calls_over_relays      mesh calls/s / two bare mTLS relays' at 16      (higher is better)
  sidecar_cpu_over_relay      a sidecar's CPU per call / a bare relay's at 16 (lower is better)

and, less portable between machines but what the goals are written in, each sidecar's CPU µs
per call at concurrency 16. One run of sidecar_profile.py gives each sidecar's idle RSS (MB).

`--record` writes a quiet run's figures into the budget (after a change that made the sidecar
cheaper, or on a new machine); the noise of each figure stays as measured.

Exit codes: 0 within budget, 1 a figure out of budget (or a call failed), 2 the benchmark
could not run. A run where the rest of the machine kept more than `max_other_cores` busy is
reported as not comparable (exit 3): rerun it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

HERE = Path(__file__).resolve().parent
DEFAULT_BUDGET = HERE / "budget.json"
LATENCY_ARGS = ("--paths", "direct,mesh,pyrelay-mtls", "--calls", "1000", "--rounds", "4", "--duration-s", "4")
PROFILE_ARGS = ("--seconds", "4", "--rounds", "1")
OTHER_LOAD = ("other_load_cores", "loaded_other_load_cores")
Better = Literal["lower", "higher"]


@dataclass(frozen=True)
class Budget:
    """A recorded figure: its value, which way is better, and the run-to-run noise measured for
    it (a fraction of the value): only a figure worse than value × (1 ± noise) fails."""

    value: float
    better: Better
    noise: float
    why: str = ""


@dataclass(frozen=True)
class Verdict:
    name: str
    measured: float
    budget: float
    limit: float
    better: Better
    ok: bool


class CheckError(Exception):
    """The benchmark could not run; says which and why."""


def load_budget(path: Path) -> tuple[dict[str, Budget], float]:
    raw = json.loads(path.read_text())
    figures = {name: Budget(**entry) for name, entry in raw["figures"].items()}
    return figures, float(raw["max_other_cores"])


def run_json(script: str, args: tuple[str, ...]) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    done = subprocess.run(
        [sys.executable, str(HERE / script), *args], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise CheckError(f"{script} exited with {done.returncode}: {done.stderr.strip()[-600:]}")
    try:
        start = done.stdout.index("{")
        parsed: dict[str, object] = json.loads(done.stdout[start:])
    except ValueError as exc:
        raise CheckError(f"{script} printed no JSON figures: {exc}") from exc
    return parsed


def _path(report: dict[str, object], name: str) -> dict[str, object]:
    paths = report["paths"]
    assert isinstance(paths, dict)
    found = paths[name]
    assert isinstance(found, dict)
    return found


def _num(mapping: dict[str, object], key: str) -> float:
    value = mapping[key]
    assert isinstance(value, (int, float))
    return float(value)


def latency_figures(report: dict[str, object]) -> tuple[dict[str, float], float, int]:
    """The ratios of one latency.py run, how busy the rest of the machine was, and failed calls."""
    mesh, relays = _path(report, "mesh"), _path(report, "pyrelay-mtls")
    mesh_cpu, relay_cpu = mesh["loaded_cpu_us_per_call"], relays["loaded_cpu_us_per_call"]
    assert isinstance(mesh_cpu, dict) and isinstance(relay_cpu, dict)
    sidecars = [_num(mesh_cpu, "sidecar-a"), _num(mesh_cpu, "sidecar-b")]
    relay = (_num(relay_cpu, "pyrelay-mtls-a") + _num(relay_cpu, "pyrelay-mtls-b")) / 2
    figures = {
        "mesh_p50_over_direct": _num(mesh, "p50_vs_direct"),
        "mesh_calls_over_relays": _num(mesh, "throughput_calls_per_s") / _num(relays, "throughput_calls_per_s"),
        "sidecar_cpu_over_relay": max(sidecars) / relay,
        "sidecar_cpu_us_at_16": max(sidecars),
    }
    other = max(_num(_path(report, p), k) for p in ("mesh", "pyrelay-mtls") for k in OTHER_LOAD)
    errors = sum(int(_num(_path(report, p), "errors")) for p in ("mesh", "pyrelay-mtls", "direct"))
    return figures, other, errors


def memory_figures(report: dict[str, object]) -> dict[str, float]:
    idle = report["rss_idle_mb"]
    assert isinstance(idle, dict)
    this = idle["this"]
    assert isinstance(this, dict)
    return {"sidecar_idle_rss_mb": max(float(v) for v in this.values())}


def judge(measured: dict[str, float], budgets: dict[str, Budget]) -> list[Verdict]:
    verdicts = []
    for name, budget in budgets.items():
        if name not in measured:
            continue
        if budget.better == "lower":
            limit = budget.value * (1 + budget.noise)
            ok = measured[name] <= limit
        else:
            limit = budget.value * (1 - budget.noise)
            ok = measured[name] >= limit
        verdicts.append(Verdict(name, measured[name], budget.value, limit, budget.better, ok))
    return verdicts


def table(verdicts: list[Verdict], other_cores: float) -> str:
    lines = [f"{'figure':28} {'measured':>10} {'budget':>10} {'limit':>10}  verdict"]
    for v in verdicts:
        sign = "<=" if v.better == "lower" else ">="
        verdict = "ok" if v.ok else "OVER BUDGET"
        lines.append(f"{v.name:28} {v.measured:10.3f} {v.budget:10.3f} {sign}{v.limit:8.3f}  {verdict}")
    lines.append(f"other work on the machine meanwhile: {other_cores:.2f} cores")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--budget", type=Path, default=DEFAULT_BUDGET, help="the recorded budget (JSON)")
    parser.add_argument("--no-memory", action="store_true", help="skip the idle RSS figure (sidecar_profile.py)")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    parser.add_argument(
        "--record", action="store_true", help="write this run's figures into the budget (a quiet run only)"
    )
    args = parser.parse_args(argv)
    budgets, max_other = load_budget(args.budget)
    try:
        measured, other, errors = latency_figures(run_json("latency.py", (*LATENCY_ARGS, "--output", "json")))
        if not args.no_memory:
            measured |= memory_figures(run_json("sidecar_profile.py", PROFILE_ARGS))
    except CheckError as exc:
        print(f"check.py: {exc}", file=sys.stderr)
        return 2
    verdicts = judge(measured, budgets)
    if args.output == "json":
        print(json.dumps({"other_cores": other, "errors": errors, "figures": [asdict(v) for v in verdicts]}, indent=2))
    else:
        print(table(verdicts, other))
    if errors:
        print(f"check.py: {errors} calls failed (run latency.py to see the first failure)", file=sys.stderr)
        return 1
    if other > max_other:  # its verdicts say nothing about the change: the neighbours moved them
        print(f"check.py: the rest of the machine kept {other:.2f} cores busy: not comparable", file=sys.stderr)
        return 3
    if args.record and not errors:
        record(args.budget, measured)
        print(f"check.py: recorded these figures in {args.budget}", file=sys.stderr)
        return 0
    return 0 if all(v.ok for v in verdicts) else 1


def record(path: Path, measured: dict[str, float]) -> None:
    """This run's figures become the budget's values; their noise and direction stay."""
    raw = json.loads(path.read_text())
    for name, value in measured.items():
        if name in raw["figures"]:
            raw["figures"][name]["value"] = round(value, 3)
    path.write_text(json.dumps(raw, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
