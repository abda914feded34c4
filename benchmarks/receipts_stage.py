"""What the receipts stage costs one sidecar per call, by its parts, with each --receipt-sync.

    PYTHONPATH=. .venv/bin/python benchmarks/receipts_stage.py [--calls 5000] [--payload-bytes 1024]

Runs the real `receipts` stage (sidecar/stages/receipts.py) around an inner handler that
records what routing and policy would and answers at once, with a real spool in a temporary
directory, and times each call with perf_counter_ns: the stage's whole cost on the call path
(build the receipt, digest the arguments, chain and hash it, insert it). Every 400 calls,
untimed, the receipts are deleted, and every 2,000 the WAL is checkpointed, as the shipper
does; the first append after a checkpoint pays an fsync of the WAL header (sidecar.receipt_shipper). Then the parts alone:
building the Receipt, hashing it, and the INSERT. `full` fsyncs every receipt, so it gets a
tenth of the calls. The latency benchmark (latency.py, path mesh-noreceipts) gives the cost
seen end to end, two sidecars and shipping included.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

try:
    import semantic_version

    from meshwarden.clock import SystemClock
    from meshwarden.policy_bundle import build, keygen, load_private_key, load_public_key, sign, verify
    from meshwarden.policy_bundle.init import init as write_starting_bundle
    from meshwarden.receipt_hash import receipt_hash
    from meshwarden.sidecar.bundle_loader import PolicyHolder
    from meshwarden.sidecar.call import Call, Caller, Reply
    from meshwarden.sidecar.catalog import CapabilitySpec, Endpoint
    from meshwarden.sidecar.local_agent import LocalAgent
    from meshwarden.sidecar.policy import ActivePolicy
    from meshwarden.sidecar.receipt_spool import ReceiptSpool, SpoolReader, Sync
    from meshwarden.sidecar.stages import receipts
except ModuleNotFoundError as exc:  # run from a checkout without PYTHONPATH
    sys.exit(f"receipts_stage.py: cannot import {exc.name}; run it with the project's venv and PYTHONPATH=<repo root>")

SUPPORT = "spiffe://meshwarden.local/agent/support"
SHIPPED_EVERY = 400  # receipts: about what a sidecar at 400 calls/s ships each second
CHECKPOINT_EVERY = 2000  # as ShippingSettings.checkpoint_every
TARGET = Endpoint(
    "billing-1",
    "billing",
    semantic_version.Version("2.4.0"),
    "127.0.0.1:9",
    "spiffe://meshwarden.local/agent/billing",
    CapabilitySpec("billing.refund", "{}", "{}", "sha256:" + "a" * 64),
)


def active_policy(directory: Path) -> PolicyHolder:
    """The starting bundle (`bundle init`), built, signed and verified as a sidecar would."""
    write_starting_bundle(directory / "bundle")
    keys = keygen(directory / "keys", "bench")
    raw = sign(build(directory / "bundle").to_bytes(), load_private_key(keys.private_key), "bench")
    holder = PolicyHolder()
    bundle = verify(raw, {"bench": load_public_key(keys.public_key)})
    holder.active = ActivePolicy(bundle, local_agent="support", local_capabilities=[])
    return holder


async def answer(call: Call) -> Reply:
    record = call.record
    record.policy_decision, record.policy_ids = "allow", ("refunds-by-support",)
    record.attempt, record.target, record.breaker_state = 1, TARGET, "closed"
    return Reply(b'{"ok":true}', "billing-1", "billing", "2.4.0")


def micros(samples: list[int]) -> str:
    ordered = sorted(samples)
    return f"p50 {statistics.median(ordered) / 1000:7.1f} us, p99 {ordered[int(len(ordered) * 0.99)] / 1000:7.1f} us"


def timed(calls: int, work: Callable[[], object]) -> list[int]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        work()
        samples.append(time.perf_counter_ns() - started)
    return samples


async def measure(calls: int, payload_bytes: int, work: Path) -> None:
    holder = active_policy(work)
    local = LocalAgent("support", "support-1", "127.0.0.1:1", SUPPORT)
    payload = b'{"text":"' + b"x" * max(payload_bytes - 11, 0) + b'"}'
    call = Call(
        call_id="c" * 32,
        capability="billing.refund",
        payload=payload,
        caller=Caller("support", "support-1", SUPPORT),
        deadline=1e18,
        session_id="s-1",
    )
    sync: Sync
    for sync, count in (("normal", calls), ("full", max(calls // 10, 10))):
        spool = ReceiptSpool.open(work / sync, instance_id="support-1", spiffe_id=SUPPORT, sync=sync)
        stage = receipts.Receipts(answer, "outbound", spool, holder, local, SystemClock())
        for _ in range(min(count, 200)):
            await stage(call)
        reader = SpoolReader(spool.path, sync)
        samples = []
        for n in range(count):
            started = time.perf_counter_ns()
            await stage(call)
            samples.append(time.perf_counter_ns() - started)
            if n % SHIPPED_EVERY == SHIPPED_EVERY - 1:  # as the shipper does, untimed
                batch = reader.batch("support-1", SHIPPED_EVERY * 2, 1 << 30)
                if batch is not None:
                    spool.prune(batch, batch.last_seq)
            if n % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
                reader.checkpoint()
        reader.close()
        bare = []
        for _ in range(count):
            started = time.perf_counter_ns()
            await answer(call)
            bare.append(time.perf_counter_ns() - started)
        print(
            f"stage, --receipt-sync {sync:<6} {micros(samples)}  ({count} calls; the inner handler alone {micros(bare)})"
        )
        spool.close()
    stage = receipts.Receipts(answer, "outbound", spool, holder, local, SystemClock())
    reply = Reply(b"{}", "billing-1", "billing", "2.4.0")
    built = stage._receipt(call, reply, "OK", "", "", time.time_ns(), 0.001)  # its parts, alone
    print(
        f"build the Receipt           {micros(timed(calls, lambda: stage._receipt(call, reply, 'OK', '', '', 0, 0.001)))}"
    )
    print(f"hash it (receipt_hash)      {micros(timed(calls, lambda: receipt_hash(built)))}")
    spool = ReceiptSpool.open(work / "insert", instance_id="support-1", spiffe_id=SUPPORT)
    print(f"chain and insert (append)   {micros(timed(calls, lambda: spool.append(built)))}")
    spool.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--payload-bytes", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meshwarden-receipts-") as work:
        asyncio.run(measure(args.calls, args.payload_bytes, Path(work)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
