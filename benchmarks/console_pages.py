"""How long the web console takes to answer its main pages with 1,000 agents registered and
10,000 sessions (or 1,000,000 receipts) stored: the console served in-process over real
registry parts (SQLite, or PostgreSQL with --store), fetched over HTTP on loopback as a
logged-in operator. The store is filled as benchmarks/operator_questions.py fills it
(bulk_receipts.py: `--ingest` sessions through the receipt store's ingest path, copied by SQL,
each copy further back in time, up to the size asked; the last session a minute ago).

    PYTHONPATH=. .venv/bin/python benchmarks/console_pages.py [--agents 1000] [--sessions 10000 | --receipts 1000000] \
        [--ingest 2000] [--store postgresql://...] [--repeat 5]

Prints, for each page, the seconds of its first fetch and the median of `--repeat` fetches of
the whole page and of the live part the page polls (the map's reading of the window's
receipts is shared for 2 s, so its first fetch is what a refresh costs the registry).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import bulk_receipts  # beside this script: python puts its folder on sys.path

from meshwarden.addresses import HostPort
from meshwarden.clock import SystemClock
from meshwarden.registry.api.controls import ControlsApi
from meshwarden.registry.approvals import Approvals
from meshwarden.registry.audit import Audit
from meshwarden.registry.budgets import Budgets, BudgetSettings
from meshwarden.registry.bundles import Bundles
from meshwarden.registry.catalog import Catalog
from meshwarden.registry.console import ConsoleServer, Sources
from meshwarden.registry.control_acks import Acknowledgements
from meshwarden.registry.controls import Controls
from meshwarden.registry.health_reports import HealthReports
from meshwarden.registry.issuer import Issuer
from meshwarden.registry.model import Capability, InstanceSpec
from meshwarden.registry.operators import OperatorCredential
from meshwarden.registry.outcomes import Outcomes
from meshwarden.registry.receipts import Receipts
from meshwarden.registry.session_queries import SessionQueries
from meshwarden.registry.store import Stores
from meshwarden.registry.store.sqlite import open_sqlite
from meshwarden.registry.task_queue import TaskQueue
from meshwarden.schema_hash import schema_hash

PAGES = (
    "/map",
    "/map?window=1h",
    "/sessions",  # the last 24 hours by default: read from the receipts of the window
    "/sessions?window=all",  # from the session aggregates
    "/sessions/s7",
    "/costs",
    "/costs?window=all",
    "/approvals",
    "/kills",
    "/tasks",
    "/bundles",
    "/audit",
)


async def measure(
    agents: int, sessions: int, ingest: int, store: str, repeat: int
) -> list[tuple[str, float, float, float]]:
    with tempfile.TemporaryDirectory() as directory:
        data = Path(directory)
        stores: Stores
        if store:
            from meshwarden.registry.store.postgres import open_postgres

            stores = await open_postgres(store, event_log_retention=100, migrate=True)
        else:
            stores = await open_sqlite(data, event_log_retention=100)
        clock = SystemClock()
        try:
            audit = Audit(stores.audit, clock)
            catalog = Catalog(stores.catalog, stores.leases, clock, lease_ttl_s=86400.0, publish=lambda e: None)
            await catalog.load()
            for n in range(agents):
                await catalog.register(
                    InstanceSpec(
                        agent=f"agent-{n:04d}",
                        version=f"1.{n % 3}.0",
                        peer_address="127.0.0.1:7411",
                        capabilities=(Capability(name=f"cap.{n}", schema_hash=schema_hash({}, {})),),
                    )
                )
            issuer = Issuer.ephemeral("meshwarden.local", clock)
            receipts = Receipts(stores.receipts, clock, trust_bundle_pem=issuer.bundle_pem)
            outcomes = Outcomes(stores.outcomes, clock)
            span_s = ingest * bulk_receipts.SESSION_SPACING_S
            await bulk_receipts.load(stores, ingest, time.time() - 60.0 - span_s)
            if sessions // ingest > 1:
                if store:
                    await bulk_receipts.copy_postgres(store, sessions // ingest - 1, span_s)
                else:
                    await asyncio.to_thread(bulk_receipts.copy_sqlite, stores.location, sessions // ingest - 1, span_s)
            controls = Controls(stores.controls, clock, audit, lambda e: None)
            tasks = TaskQueue(stores.tasks, clock)
            sources = Sources(
                catalog=catalog,
                health=HealthReports(clock),
                receipts=receipts,
                sessions=SessionQueries(receipts, outcomes, stores.sessions, clock),
                budgets=Budgets(stores.budgets, clock, audit, BudgetSettings()),
                approvals=Approvals(stores.approvals, clock, audit),
                controls=controls,
                task_queue=tasks,
                bundles=Bundles(stores.bundles, clock, audit, lambda e: None, trusted_keys=None),
                audit=audit,
                clock=clock,
            )
            operator = OperatorCredential.load_or_create(data)
            api = ControlsApi(controls, Acknowledgements(clock), audit, clock, tasks)
            server = ConsoleServer(sources, api, (operator,), idle_s=3600)
            bound = await server.start(HostPort("127.0.0.1", 0))
            try:
                return await _fetch_all(f"http://{bound}", (data / "operator.token").read_text().strip(), repeat)
            finally:
                await server.stop()
        finally:
            await stores.close()


async def _fetch_all(url: str, token: str, repeat: int) -> list[tuple[str, float, float, float]]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{url}/login", data={"token": token, "user": "bench"}) as reply:
            assert reply.status == 200, await reply.text()
        rows = []
        for page in PAGES:
            first = await _median(http, url + page, {}, 1)
            whole = await _median(http, url + page, {}, repeat)
            live = await _median(http, url + page, {"X-Console-Live": "1"}, repeat)
            rows.append((page, first, whole, live))
        return rows


async def _median(http: aiohttp.ClientSession, url: str, headers: dict[str, str], repeat: int) -> float:
    times: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        async with http.get(url, headers=headers) as reply:
            await reply.read()
            assert reply.status == 200, url
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--receipts", type=int, default=0, help="instead of --sessions: this many receipts (about)")
    parser.add_argument("--ingest", type=int, default=2000, help="sessions through the ingest path (the rest copied)")
    parser.add_argument("--store", default="", help="postgresql://... (a migrated or empty database); default SQLite")
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    sessions = -(-options.receipts // bulk_receipts.RECEIPTS_PER_SESSION) if options.receipts else options.sessions
    ingest = min(options.ingest, sessions)
    sessions = -(-sessions // ingest) * ingest
    rows = asyncio.run(measure(options.agents, sessions, ingest, options.store, options.repeat))
    print(
        f"{options.agents} agents, {sessions} sessions ({sessions * bulk_receipts.RECEIPTS_PER_SESSION} receipts) "
        f"on {'PostgreSQL' if options.store else 'SQLite'}; median seconds"
    )
    print(f"{'page':<22} {'first':>8} {'whole':>8} {'live':>8}")
    for page, first, whole, live in rows:
        print(f"{page:<22} {first:>8.4f} {whole:>8.4f} {live:>8.4f}")


if __name__ == "__main__":
    main()
