"""How much cyclic garbage bundle activations leave frozen, never to be collected.

    .venv/bin/python benchmarks/build_gc_leak.py [--activations 5] [--callers 4] [--output table|json]
    cd /tmp && PYTHONPATH=OTHER_CHECKOUT /path/to/.venv/bin/python /path/to/build_gc_leak.py

The sidecar's bundle loader freezes the heap after each build (gc.freeze), so that no later
full collection scans the new policy. Whatever is garbage at that moment, or alive then and
garbage later in a cycle, is frozen with it and never collected. This activates the
1,000-policy bundle of benchmarks/policy_decisions.py `--activations` times through the real
BundleLoader while `--callers` tasks on the event loop act like calls: each keeps an object
in a cycle alive across an await, then ties an exception (and so its traceback's frame) to
it and drops it. Afterwards it collects what is not frozen, unfreezes, and counts what a
collection then finds: the garbage the activations froze. It uses only the loader's public
API, so it measures any checkout given by PYTHONPATH.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

try:
    from meshwarden.policy_bundle import build, keygen, load_private_key, sign
    from meshwarden.policy_bundle.artifact import encode
    from meshwarden.policy_bundle.keys import load_public_key
    from meshwarden.sidecar.bundle_loader import BundleLoader, BundleStatus, PolicyHolder

    sys.path.insert(0, str(Path(__file__).parent))
    from policy_decisions import generate_bundle
except ModuleNotFoundError as exc:  # run from a checkout without PYTHONPATH
    sys.exit(f"build_gc_leak.py: cannot import {exc.name}; run it with the project's venv and PYTHONPATH=<repo root>")


class _Node:
    """What a call leaves behind: an object in a cycle, with an exception tied to it."""

    itself: object
    error: Exception


def revisions(work: Path, count: int) -> tuple[dict[str, object], list[bytes]]:
    source = work / "bundle"
    generate_bundle(source, 1000, random.Random(7))
    keys = keygen(work / "keys", "bench")
    private = load_private_key(keys.private_key)
    signed = []
    for revision in range(1, count + 1):
        manifest = source / "manifest.toml"
        manifest.write_text(re.sub(r"(?m)^revision = \d+$", f"revision = {revision}", manifest.read_text()))
        signed.append(sign(encode(build(source).artifact), private, "bench"))
    return {"bench": load_public_key(keys.public_key)}, signed


async def measure(work: Path, activations: int, callers: int) -> dict[str, object]:
    trusted, signed = await asyncio.to_thread(revisions, work, activations)

    async def report(_status: BundleStatus) -> None:
        return None

    loader = BundleLoader(
        PolicyHolder(),
        agent="agent000",
        capabilities=lambda: ["cap000"],
        trusted_keys=trusted,  # type: ignore[arg-type]
        data_dir=work / "sidecar",
        report=report,
    )
    calling, made = True, 0

    async def call() -> None:
        nonlocal made
        while calling:
            node = _Node()
            node.itself = node
            made += 1
            await asyncio.sleep(0.0005)  # in flight
            try:
                raise ValueError("a call failed")
            except ValueError as exc:
                node.error = exc  # a cycle through the traceback's frame too
            del node

    gc.collect()
    gc.freeze()  # as the sidecar does after start-up
    tasks = [asyncio.create_task(call()) for _ in range(callers)]
    for revision, raw in enumerate(signed, start=1):
        await loader.offer(raw, revision)
        await asyncio.sleep(0.2)
    calling = False
    await asyncio.gather(*tasks)
    await asyncio.sleep(0.5)  # replaced policies are freed
    gc.collect()
    gc.unfreeze()
    frozen_garbage = gc.collect()
    return {
        "meshwarden": str(Path(sys.modules["meshwarden"].__file__ or "").parent),
        "activations": activations,
        "call_cycles_made": made,
        "frozen_garbage_objects": frozen_garbage,
        "per_activation": round(frozen_garbage / activations, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--activations", type=int, default=5)
    parser.add_argument("--callers", type=int, default=4)
    parser.add_argument("--output", choices=["table", "json"], default="table")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="build-gc-leak-") as tmp:
        result = asyncio.run(measure(Path(tmp), args.activations, args.callers))
    if args.output == "json":
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
