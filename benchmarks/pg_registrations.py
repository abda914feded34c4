"""Registrations per second on PostgreSQL through the registry's Catalog, without gRPC: what
the store path allows, from one process and from several at once (replicas on one database).

Each process runs `Catalog.register` (validation, the store's transaction, publication to a
no-op watcher) `--registrations` times, `--concurrency` at a time, on its own asyncpg pool;
with `--processes N` they start together and the rate is all registrations over the time
the slowest took. benchmarks/registry_throughput.py measures the same through gRPC.

    PYTHONPATH=. .venv/bin/python benchmarks/pg_registrations.py --store postgresql://USER@HOST:PORT/DB \
        [--registrations 3000] [--concurrency 48] [--processes 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

from meshwarden.clock import SystemClock
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.model import Capability, InstanceSpec
from meshwarden.registry.store.postgres import Database
from meshwarden.registry.store.postgres.catalog import PostgresCatalog, PostgresLeases

SPEC = InstanceSpec(
    agent="bench",
    version="1.0.0",
    peer_address="127.0.0.1:7411",
    capabilities=tuple(Capability(name=f"bench.c{n}", schema_hash="sha256:" + "0" * 64) for n in range(5)),
    spiffe_id="spiffe://meshwarden.local/agent/bench",
)


async def register_all(url: str, count: int, concurrency: int, start_at: float) -> float:
    """Registers `count` instances from `start_at` (wall clock); returns the seconds it took."""
    db = await Database.connect(url, max_size=concurrency)
    try:
        catalog = Catalog(
            PostgresCatalog(db, event_log_retention=1000), PostgresLeases(db), SystemClock(), lease_ttl_s=600.0,
            publish=lambda _: None,
        )  # fmt: skip
        await catalog.load()
        queue = iter(range(count))

        async def worker() -> None:
            for _ in queue:
                await catalog.register(SPEC)

        await asyncio.sleep(max(0.0, start_at - time.time()))
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, help="postgresql://... (a migrated database)")
    parser.add_argument("--registrations", type=int, default=3000, help="in all, shared by the processes")
    parser.add_argument("--concurrency", type=int, default=48, help="per process")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.start_at:  # one of several processes: print the seconds it took
        alone = asyncio.run(register_all(options.store, options.registrations, options.concurrency, options.start_at))
        print(alone, flush=True)
        return
    each = options.registrations // options.processes
    start_at = time.time() + 3.0  # every process connected and loaded by then
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--store", options.store, "--registrations", str(each),
             "--concurrency", str(options.concurrency), "--start-at", str(start_at)],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip
        for _ in range(options.processes)
    ]
    took = [float(child.communicate()[0]) for child in children]
    total = each * options.processes
    print(
        f"{options.processes} process(es) x {options.concurrency} concurrent: {total} registrations in "
        f"{max(took):.2f} s = {total / max(took):.0f}/s"
    )


if __name__ == "__main__":
    main()
