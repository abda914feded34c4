"""Registrations and renewals per second through the registry's Catalog, without gRPC: what
the store path allows, on PostgreSQL from one process or from several at once (replicas on
one database), or on SQLite (without --store: a temporary data directory, one process).

Each process runs `Catalog.register` (validation, the store's transaction, publication to a
watch hub without watchers) `--registrations` times, `--concurrency` at a time, then
`Catalog.renew` of each; with `--processes N` they start together and the rate is all
registrations over the time the slowest took. Also the process's CPU per registration and per
renewal (its threads included): against registry_throughput.py's figures through gRPC, what
the gRPC call adds.

    PYTHONPATH=. .venv/bin/python benchmarks/pg_registrations.py [--store postgresql://USER@HOST:PORT/DB] \
        [--registrations 3000] [--concurrency 48] [--processes 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from meshwarden.clock import SystemClock
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.model import Capability, InstanceSpec
from meshwarden.registry.store import CatalogStore, LeaseStore
from meshwarden.registry.store.postgres import Database
from meshwarden.registry.store.postgres.catalog import PostgresCatalog, PostgresLeases
from meshwarden.registry.store.sqlite import open_sqlite
from meshwarden.registry.watch_hub import WatchHub
from meshwarden.schema_hash import schema_hash

SPEC = InstanceSpec(
    agent="bench",
    version="1.0.0",
    peer_address="127.0.0.1:7411",
    capabilities=tuple(Capability(name=f"bench.c{n}", schema_hash=schema_hash({}, {})) for n in range(5)),
    spiffe_id="spiffe://meshwarden.local/agent/bench",
)


async def register_all(url: str, count: int, concurrency: int, start_at: float) -> dict[str, float]:
    """Registers `count` instances from `start_at` (wall clock), then renews each; returns the
    seconds each phase took and the CPU seconds this process used in each."""
    if url:
        db = await Database.connect(url, max_size=concurrency)
        try:
            store = PostgresCatalog(db, event_log_retention=1000)
            return await _measure(store, PostgresLeases(db), count, concurrency, start_at)
        finally:
            await db.close()
    with tempfile.TemporaryDirectory() as data_dir:
        stores = await open_sqlite(Path(data_dir), event_log_retention=1000)
        try:
            return await _measure(stores.catalog, stores.leases, count, concurrency, start_at)
        finally:
            await stores.close()


async def _measure(
    store: CatalogStore, leases: LeaseStore, count: int, concurrency: int, start_at: float
) -> dict[str, float]:
    hub = WatchHub(1024)
    catalog = Catalog(store, leases, SystemClock(), lease_ttl_s=600.0, publish=hub.publish)
    await catalog.load()
    ids: list[str] = []

    async def run(one: Callable[[int], Awaitable[object]]) -> tuple[float, float]:
        queue = iter(range(count))

        async def worker() -> None:
            for n in queue:
                await one(n)

        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, time.process_time() - cpu

    async def register(_: int) -> None:
        ids.append((await catalog.register(SPEC)).instance.instance_id)

    async def renew(n: int) -> None:
        await catalog.renew(ids[n])

    await asyncio.sleep(max(0.0, start_at - time.time()))
    register_s, register_cpu_s = await run(register)
    renew_s, renew_cpu_s = await run(renew)
    return {"register_s": register_s, "register_cpu_s": register_cpu_s, "renew_s": renew_s, "renew_cpu_s": renew_cpu_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="", help="postgresql://... (a migrated database); default SQLite")
    parser.add_argument("--registrations", type=int, default=3000, help="in all, shared by the processes")
    parser.add_argument("--concurrency", type=int, default=48, help="per process")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.start_at:  # one of several processes: print the seconds it took
        took = asyncio.run(register_all(options.store, options.registrations, options.concurrency, options.start_at))
        print(json.dumps(took), flush=True)
        return
    each = options.registrations // options.processes
    start_at = time.time() + 3.0  # every process connected and loaded by then
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--store",
                options.store,
                "--registrations",
                str(each),
                "--concurrency",
                str(options.concurrency),
                "--start-at",
                str(start_at),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip
        for _ in range(options.processes)
    ]
    results: list[dict[str, float]] = [json.loads(child.communicate()[0]) for child in children]
    total = each * options.processes
    for phase in ("register", "renew"):
        slowest = max(row[f"{phase}_s"] for row in results)
        cpu_us = 1e6 * sum(row[f"{phase}_cpu_s"] for row in results) / total
        print(
            f"{phase}: {options.processes} process(es) x {options.concurrency} concurrent: {total} in "
            f"{slowest:.2f} s = {total / slowest:.0f}/s; {cpu_us:.0f} us of CPU each"
        )


if __name__ == "__main__":
    main()
