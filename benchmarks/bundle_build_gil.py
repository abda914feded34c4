"""How long each cedarpy call of a bundle build holds the interpreter, in CPU time.

    .venv/bin/python benchmarks/bundle_build_gil.py [--builds 3] [--output table|json]
    cd /tmp && PYTHONPATH=OTHER_CHECKOUT /path/to/.venv/bin/python OTHER_CHECKOUT/benchmarks/bundle_build_gil.py

A sidecar builds an ActivePolicy in a worker thread (sidecar.bundle_loader), but a call into
cedarpy that does not release the GIL holds the event loop's thread for its whole length, and
the loop can stall that long however the threads are scheduled. This builds the 1,000-policy
bundle of benchmarks/policy_decisions.py `--builds` times and times every cedarpy call by the
building thread's CPU time (time.thread_time), which other processes' load does not inflate,
unlike the loop lag measured on a busy machine. Calls made with release_gil=True are named so:
their CPU time runs without the GIL. Garbage collections during the builds are listed too (in
CPU time): they hold the GIL whichever thread triggers them. Each build runs inside the bundle
loader's own build context (sidecar.bundle_loader.build_window), as a sidecar runs it. What is
left holding it is the figure to watch: each such call should stay well under the 10 ms an
event loop may be held.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

try:
    import cedarpy

    from meshwarden.policy_bundle import build, keygen, load_private_key, sign
    from meshwarden.policy_bundle.artifact import encode
    from meshwarden.policy_bundle.keys import load_public_key
    from meshwarden.policy_bundle.verify import verify
    from meshwarden.sidecar.bundle_loader import build_window
    from meshwarden.sidecar.policy import ActivePolicy

    sys.path.insert(0, str(Path(__file__).parent))
    from policy_decisions import generate_bundle
except ModuleNotFoundError as exc:  # run from a checkout without PYTHONPATH
    sys.exit(
        f"bundle_build_gil.py: cannot import {exc.name}; run it with the project's venv and PYTHONPATH=<repo root>"
    )

Timings = list[tuple[str, float]]
# (owner, name, is a static method): every cedarpy entry point a build uses.
CALLS: tuple[tuple[Any, str, bool], ...] = (
    (cedarpy.Entities, "from_json_str", True),
    (cedarpy.Schema, "from_str", True),
    (cedarpy.PolicySet, "from_str", True),
    (cedarpy.PolicySet, "from_pst", True),
    (cedarpy, "policies_to_pst", False),
    (cedarpy, "is_authorized_batch", False),
    (cedarpy, "is_authorized", False),
)


def timed(name: str, fn: Callable[..., Any], timings: Timings) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            released = " (GIL released)" if kwargs.get("release_gil") else ""
            timings.append((name + released, (time.thread_time() - started) * 1000))

    return call


def instrument(timings: Timings) -> None:
    for owner, name, static in CALLS:
        wrapper = timed(name, getattr(owner, name), timings)
        setattr(owner, name, staticmethod(wrapper) if static else wrapper)


def time_collections(timings: Timings) -> None:
    """Garbage collections hold the GIL too (counted as "gc generation N", CPU time of the
    collecting thread: the building one)."""
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.thread_time()
        else:
            timings.append((f"gc generation {info['generation']}", (time.thread_time() - started[0]) * 1000))

    gc.callbacks.append(on_gc)


def summary(timings: Timings, builds: int) -> dict[str, dict[str, float]]:
    by_name: dict[str, list[float]] = {}
    for name, ms in timings:
        by_name.setdefault(name, []).append(ms)
    return {
        name: {
            "calls_per_build": len(values) / builds,
            "median_cpu_ms": round(sorted(values)[len(values) // 2], 2),
            "longest_cpu_ms": round(max(values), 2),
        }
        for name, values in sorted(by_name.items(), key=lambda item: -max(item[1]))
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument("--output", choices=["table", "json"], default="table")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bundle-build-gil-") as tmp:
        work = Path(tmp)
        generate_bundle(work / "bundle", 1000, random.Random(7))
        keys = keygen(work / "keys", "bench")
        raw = sign(encode(build(work / "bundle").artifact), load_private_key(keys.private_key), "bench")
        trusted = {"bench": load_public_key(keys.public_key)}
        verified = verify(raw, trusted)
        ActivePolicy(verified, local_agent="agent000", local_capabilities=["cap000"])  # warm-up, not counted
        gc.collect()
        gc.freeze()  # as the sidecar does after start-up (sidecar.app)
        timings: Timings = []
        instrument(timings)
        time_collections(timings)
        for _ in range(args.builds):
            with build_window():  # as the sidecar's bundle loader runs a build
                ActivePolicy(verified, local_agent="agent000", local_capabilities=["cap000"])
    result = {"meshwarden": str(Path(sys.modules["meshwarden"].__file__ or "").parent), **summary(timings, args.builds)}
    if args.output == "json":
        print(json.dumps(result, indent=2))
    else:
        print(f"meshwarden: {result.pop('meshwarden')}")
        print(f"{'cedarpy call':<36} {'per build':>9} {'median ms':>10} {'longest ms':>11}  (CPU)")
        for name, row in result.items():
            assert isinstance(row, dict)
            print(
                f"{name:<36} {row['calls_per_build']:>9.0f} {row['median_cpu_ms']:>10.2f} {row['longest_cpu_ms']:>11.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
