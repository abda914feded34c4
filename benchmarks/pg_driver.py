"""Which PostgreSQL driver the registry's store uses: asyncpg against psycopg 3 (async), on the
statements the store runs most.

    .venv/bin/python benchmarks/pg_driver.py --url postgresql://USER@HOST:PORT/DB [--ops 2000]

Needs an empty scratch database (it creates and drops its own table) and `pip install
"psycopg[binary]"` for the comparison (psycopg is not a dependency of meshwarden). Both
drivers (asyncpg twice: with its pool's default reset query on every release, and without
it, as the registry runs it) run the same two workloads, each `--ops` times one after the other (latency) and then
with 16 concurrent callers over a pool of 8 connections (throughput):
- read: one row by primary key (a catalog lookup);
- write: one transaction that locks a counter row, bumps it and inserts an event row (a
  catalog change: what every registration costs).
Other load on the machine inflates both alike; compare the ratio within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

SETUP = (
    "DROP TABLE IF EXISTS bench_meta, bench_events",
    "CREATE TABLE bench_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    "INSERT INTO bench_meta VALUES ('revision', 0)",
    "CREATE TABLE bench_events (revision BIGINT PRIMARY KEY, body TEXT NOT NULL)",
)
CONCURRENCY = 16
POOL = 8


@dataclass(frozen=True)
class Figures:
    driver: str
    workload: str
    p50_us: float
    p99_us: float
    ops_per_s: float


async def _timed(op: Callable[[], Awaitable[None]], ops: int) -> tuple[float, float, float]:
    samples = []
    for _ in range(ops):
        started = time.perf_counter()
        await op()
        samples.append(time.perf_counter() - started)
    samples.sort()
    ops_s = await _throughput(op, ops)
    return samples[len(samples) // 2] * 1e6, samples[int(len(samples) * 0.99)] * 1e6, ops_s


async def _throughput(op: Callable[[], Awaitable[None]], ops: int) -> float:
    per_caller = max(1, ops // CONCURRENCY)

    async def caller() -> None:
        for _ in range(per_caller):
            await op()

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return per_caller * CONCURRENCY / (time.perf_counter() - started)


async def _keep_session(connection: Any) -> None:
    """The registry's pool reset (registry/store/postgres/database.py): no query on release."""


async def _asyncpg(url: str, ops: int, *, reset_on_release: bool) -> list[Figures]:
    reset = None if reset_on_release else _keep_session
    pool: Any = await asyncpg.create_pool(url, min_size=POOL, max_size=POOL, reset=reset)
    driver = "asyncpg (default pool reset)" if reset_on_release else "asyncpg (as the registry)"

    async def read() -> None:
        async with pool.acquire() as connection:
            await connection.fetchrow("SELECT key, value FROM bench_meta WHERE key = $1", "revision")

    async def write() -> None:
        async with pool.acquire() as connection, connection.transaction():
            await connection.fetchval("SELECT value FROM bench_meta WHERE key = 'revision' FOR UPDATE")
            revision = await connection.fetchval(
                "UPDATE bench_meta SET value = value + 1 WHERE key = 'revision' RETURNING value"
            )
            await connection.execute("INSERT INTO bench_events VALUES ($1, $2)", revision, "{}")

    try:
        return [Figures(driver, name, *await _timed(op, ops)) for name, op in (("read", read), ("write", write))]
    finally:
        await pool.close()


async def _psycopg(url: str, ops: int) -> list[Figures]:
    import psycopg

    # A pool of 8 connections by hand (psycopg_pool is one more package; a queue is enough here).
    connections: asyncio.Queue[Any] = asyncio.Queue()
    for _ in range(POOL):
        connections.put_nowait(await psycopg.AsyncConnection.connect(url, autocommit=True))

    async def run(work: Callable[[Any], Awaitable[None]]) -> None:
        connection = await connections.get()
        try:
            await work(connection)
        finally:
            connections.put_nowait(connection)

    async def read_on(connection: Any) -> None:
        async with connection.cursor() as cursor:
            await cursor.execute("SELECT key, value FROM bench_meta WHERE key = %s", ("revision",))
            await cursor.fetchone()

    async def write_on(connection: Any) -> None:
        async with connection.transaction(), connection.cursor() as cursor:
            await cursor.execute("SELECT value FROM bench_meta WHERE key = 'revision' FOR UPDATE")
            await cursor.execute("UPDATE bench_meta SET value = value + 1 WHERE key = 'revision' RETURNING value")
            row = await cursor.fetchone()
            await cursor.execute("INSERT INTO bench_events VALUES (%s, %s)", (row[0], "{}"))

    async def read() -> None:
        await run(read_on)

    async def write() -> None:
        await run(write_on)

    try:
        return [Figures("psycopg 3", name, *await _timed(op, ops)) for name, op in (("read", read), ("write", write))]
    finally:
        while not connections.empty():
            await (connections.get_nowait()).close()


async def _main(url: str, ops: int) -> list[Figures]:
    setup = await asyncpg.connect(url)
    try:
        for statement in SETUP:
            await setup.execute(statement)
        figures = await _asyncpg(url, ops, reset_on_release=True)
        figures += await _asyncpg(url, ops, reset_on_release=False)
        try:
            figures += await _psycopg(url, ops)
        except ImportError:
            print('psycopg is not installed (pip install "psycopg[binary]"): asyncpg alone')
        return figures
    finally:
        await setup.execute("DROP TABLE IF EXISTS bench_meta, bench_events")
        await setup.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True, help="postgresql://USER@HOST:PORT/DATABASE (a scratch database)")
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--output", choices=("table", "json"), default="table")
    args = parser.parse_args()
    figures = asyncio.run(_main(args.url, args.ops))
    if args.output == "json":
        print(json.dumps([asdict(f) for f in figures]))
        return
    print(f"{'driver':<30} {'workload':<8} {'p50 µs':>8} {'p99 µs':>8} {'ops/s (16 callers)':>20}")
    for f in figures:
        print(f"{f.driver:<30} {f.workload:<8} {f.p50_us:>8.0f} {f.p99_us:>8.0f} {f.ops_per_s:>20.0f}")
    by = {(f.driver, f.workload): f for f in figures}
    for workload in ("read", "write"):
        if ("psycopg 3", workload) in by:
            a, p = by["asyncpg (as the registry)", workload], by["psycopg 3", workload]
            print(
                f"{workload}: psycopg 3 / asyncpg p50 {p.p50_us / a.p50_us:.2f}x, "
                f"asyncpg / psycopg 3 throughput {a.ops_per_s / p.ops_per_s:.2f}x"
            )
    print("(one run; other load on the machine inflates both drivers alike)")


if __name__ == "__main__":
    main()
