"""How long the web console takes to answer its main pages with 1,000 agents registered and
a store of receipts: the console served in-process over real registry parts (SQLite, WAL),
fetched over HTTP on loopback as a logged-in operator. The receipts are session_queries.py's
(four agents, sessions of four calls), shipped within the map's window.

    PYTHONPATH=. .venv/bin/python benchmarks/console_pages.py [--agents 1000] [--calls 10000] [--repeat 5]

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
from session_queries import T0, fill  # beside this script: python puts its folder on sys.path

from meshwarden.addresses import HostPort
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
from meshwarden.registry.store.sqlite import stores_over
from meshwarden.registry.store.sqlite.database import Database
from meshwarden.registry.task_queue import TaskQueue
from meshwarden.schema_hash import schema_hash

PAGES = ("/map", "/map?window=1h", "/sessions", "/costs", "/approvals", "/kills", "/tasks", "/bundles", "/audit")


class _Clock:
    """Wall time just after the synthetic receipts, so that they fall in the pages' windows."""

    def __init__(self) -> None:
        self.wall_at = T0

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return self.wall_at


async def measure(agents: int, calls: int, repeat: int) -> list[tuple[str, float, float, float]]:
    with tempfile.TemporaryDirectory() as directory:
        data = Path(directory)
        db = await asyncio.to_thread(Database.open, data)
        stores = stores_over(db, event_log_retention=100)
        clock = _Clock()
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
            clock.wall_at = await fill(receipts, outcomes, issuer, calls) + 1.0
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
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    rows = asyncio.run(measure(options.agents, options.calls, options.repeat))
    print(f"{options.agents} agents, {options.calls} calls ({options.calls * 2} receipts); median seconds")
    print(f"{'page':<18} {'first':>8} {'whole':>8} {'live':>8}")
    for page, first, whole, live in rows:
        print(f"{page:<18} {first:>8.4f} {whole:>8.4f} {live:>8.4f}")


if __name__ == "__main__":
    main()
