"""`sessions list`, `session show` and `costs` on PostgreSQL at a million receipts: the same
SessionQueries as the registry (in-process, no gRPC), over a migrated, empty database.

The rows are made in two steps. First `--calls` calls (two receipts each) go through the real
path (Receipts.ship: chains, signatures, the session aggregates kept in each batch's
transaction; the shape of benchmarks/session_queries.py: sessions of four calls, usage on the
callee's side, an outcome on two sessions in three), which also measures ingest. Then one
INSERT ... SELECT over generate_series per table copies those rows `--copies` times under new
session and chain ids (bulk_receipts.copy_postgres: receipts and every per-session table, then
the cost totals rebuilt), so every copy's aggregates match its receipts, without a million
API calls.

    PYTHONPATH=. .venv/bin/python benchmarks/session_queries_pg.py --store postgresql://USER@HOST:PORT/DB \
        [--calls 2000] [--copies 250] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import bulk_receipts  # beside this script: python puts its folder on sys.path
from session_queries import (
    OPERATOR,
    LoopWatch,
    fill,
    median_s,
)

from meshwarden.clock import SystemClock
from meshwarden.registry.issuer import Issuer
from meshwarden.registry.outcomes import Outcomes
from meshwarden.registry.receipts import Receipts
from meshwarden.registry.session_queries import SessionQueries
from meshwarden.registry.store.postgres import Database, stores_over
from meshwarden.v1 import receipts_pb2


async def copy_rows(url: str, copies: int) -> float:
    started = time.perf_counter()
    await bulk_receipts.copy_postgres(url, copies, 0.0)
    return time.perf_counter() - started


async def measure(url: str, calls: int, copies: int, repeat: int) -> None:
    clock = SystemClock()
    db = await Database.connect(url)
    stores = stores_over(db, event_log_retention=100)
    try:
        issuer = Issuer.ephemeral("meshwarden.local", clock)
        receipts = Receipts(stores.receipts, clock, trust_bundle_pem=issuer.bundle_pem)
        outcomes = Outcomes(stores.outcomes, clock)
        if await receipts.count():
            raise SystemExit("the database holds receipts already: give a migrated, empty one")
        started = time.perf_counter()
        await fill(receipts, outcomes, issuer, calls)
        fill_s = time.perf_counter() - started
        print(f"ingest: {2 * calls} receipts through Receipts.ship in {fill_s:.1f} s ({2 * calls / fill_s:.0f}/s)")
        copy_s = await copy_rows(url, copies)
        total = await receipts.count()
        print(f"copied {copies} times in {copy_s:.1f} s (with VACUUM ANALYZE): {total} receipts stored")
        queries = SessionQueries(receipts, outcomes, stores.sessions, clock)
        watch = LoopWatch()
        watch.start()
        cases = {
            "sessions list (100)": lambda: queries.list_sessions(receipts_pb2.ListSessionsRequest(limit=100), OPERATOR),
            "sessions list (1,000)": lambda: queries.list_sessions(
                receipts_pb2.ListSessionsRequest(limit=1000), OPERATOR
            ),
            "sessions list --agent kb": lambda: queries.list_sessions(
                receipts_pb2.ListSessionsRequest(agent="kb", limit=100), OPERATOR
            ),
            "stuck (running, oldest)": lambda: queries.list_sessions(
                receipts_pb2.ListSessionsRequest(state="running", order="oldest", limit=100), OPERATOR
            ),
            "session show": lambda: queries.get_session(receipts_pb2.GetSessionRequest(session_id="s7~2"), OPERATOR),
            "costs --by agent": lambda: queries.costs(receipts_pb2.CostsRequest(by="agent"), OPERATOR),
            "costs --by model": lambda: queries.costs(receipts_pb2.CostsRequest(by="model"), OPERATOR),
            "costs --by refusal": lambda: queries.costs(receipts_pb2.CostsRequest(by="refusal"), OPERATOR),
        }
        for name, action in cases.items():
            print(f"{name:<26} {await median_s(action, repeat):>8.4f} s (median of {repeat})")
        watch.stop()
        print(f"longest event-loop stall meanwhile: {watch.longest_s:.3f} s")
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, help="postgresql://... (a migrated, empty database)")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--copies", type=int, default=249, help="copies of those rows (1 + copies sets in all)")
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(measure(options.store, options.calls, options.copies, options.repeat))


if __name__ == "__main__":
    main()
