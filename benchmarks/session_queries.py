"""How long the registry takes to answer `sessions list`, `session show` and `costs` as its
receipts grow: SessionQueries on a real registry store (SQLite, WAL) filled with synthetic
receipts, both sidecars' receipts of each call, sessions of four calls (a tree of three levels),
usage on every callee-side receipt. No gRPC: the figures are the query and the arithmetic.

    PYTHONPATH=. .venv/bin/python benchmarks/session_queries.py [--calls 10000 50000] [--repeat 5]

Prints one row per size: the seconds the fill took (shipping every receipt, the session
aggregates kept in each batch's transaction); median seconds of ListSessions (whole history,
from the aggregates), the running sessions idle longest (stuck work), ListSessions over the
last 1 % of the time range (from the receipts), GetSession, and Costs by agent, by model and
by refusal cause (aggregates); then the longest time the event loop went without a turn while
the queries ran (a ticker task asks for one every 5 ms): what the registry's lease renewals
and watchers would have waited.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from google.protobuf import timestamp_pb2

from meshwarden.clock import SystemClock
from meshwarden.identity.svid import Svid
from meshwarden.receipt_hash import receipt_hash
from meshwarden.receipt_signing import sign_head
from meshwarden.registry.authz import Caller
from meshwarden.registry.issuer import Issuer
from meshwarden.registry.outcomes import Outcomes
from meshwarden.registry.receipts import Receipts
from meshwarden.registry.session_queries import SessionQueries
from meshwarden.registry.store.sqlite import open_sqlite
from meshwarden.v1 import receipts_pb2

AGENTS = ("frontdesk", "support", "billing", "kb")
MODELS = ("gpt-4o-mini", "claude-3-5-haiku", "gpt-4.1-nano")
OPERATOR = Caller(identity=None, svid_expires_at=0.0, operator=True, sent_bad_operator_token=False, peer="bench")
T0 = 1_790_000_000.0


def _stamp(seconds: float) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(seconds * 1e9))
    return t


class _Chain:
    """One sidecar's chain, hashed as the receipt store checks it."""

    def __init__(self, instance_id: str, svid: Svid) -> None:
        self.instance_id, self.svid, self.seq, self.head = instance_id, svid, 0, ""
        self.spiffe_id = svid.spiffe_id
        self.pending: list[receipts_pb2.Receipt] = []

    async def ship(self, receipts: Receipts) -> None:
        for start in range(0, len(self.pending), 1000):
            batch = self.pending[start : start + 1000]
            last = batch[-1]
            await receipts.ship(self.spiffe_id, batch, sign_head(self.svid, self.instance_id, last.seq, last.hash))
        self.pending.clear()

    def add(self, receipt: receipts_pb2.Receipt) -> None:
        self.seq += 1
        receipt.sidecar_instance_id, receipt.sidecar_spiffe_id = self.instance_id, self.spiffe_id
        receipt.seq, receipt.prev_hash = self.seq, self.head
        receipt.hash = receipt_hash(receipt)
        self.head = receipt.hash
        self.pending.append(receipt)


async def fill(receipts: Receipts, outcomes: Outcomes, issuer: Issuer, calls: int) -> float:
    """Writes `calls` calls (two receipts each); returns the time range's end."""
    chains = {a: _Chain(f"{a}-1", issuer.issue(_spiffe_id(a), 3600)) for a in AGENTS}
    at = T0
    for n in range(calls):
        session, position = n // 4, n % 4
        caller, callee = (
            (AGENTS[0], AGENTS[1]) if position == 0 else (AGENTS[1 + position % 2], AGENTS[1 + (position + 1) % 3])
        )
        at += 0.01
        common = {
            "call_id": f"c{n}",
            "parent_call_id": f"c{n - position}" if position else "",
            "session_id": f"s{session}",
            "workflow_id": f"w{session % 20}",
            "caller_agent": caller,
            "caller_spiffe_id": _spiffe_id(caller),
            "callee_agent": callee,
            "callee_spiffe_id": _spiffe_id(callee),
            "capability": f"{callee}.work",
            "version": "1.0.0" if n < calls // 2 else "1.1.0",  # a release halfway: a change to compare
            "on_behalf_of": f"user:u{session % 50}",  # who the session was started for, carried on every call
            "status": "OK",
            "policy_decision": "allow",
            "attempt": 1,
            "started_at": _stamp(at),
            "latency_us": 3000,
        }
        chains[caller].add(receipts_pb2.Receipt(direction="outbound", **common))  # type: ignore[arg-type]
        usage = receipts_pb2.Usage(model=MODELS[n % 3], input_tokens=500, output_tokens=80, cost_micro_usd=100 + n % 50)
        chains[callee].add(receipts_pb2.Receipt(direction="inbound", usage=usage, **common))  # type: ignore[arg-type]
        if position == 3 and session % 3:
            await outcomes.report(f"s{session}", "succeeded" if session % 3 == 1 else "failed", "", reported_by=caller)
        if n % 500 == 499 or n == calls - 1:
            for chain in chains.values():
                await chain.ship(receipts)
    return at


def _spiffe_id(agent: str) -> str:
    return f"spiffe://meshwarden.local/agent/{agent}"


async def median_s(action: Callable[[], Awaitable[object] | object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        if asyncio.iscoroutine(result):
            await result
        times.append(time.perf_counter() - started)
    return statistics.median(times)


class LoopWatch:
    """The longest the event loop went without running a task that asked for a turn every 5 ms."""

    def __init__(self) -> None:
        self.longest_s = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            self.longest_s = max(self.longest_s, now - last - 0.005)
            last = now

    def start(self) -> None:
        self._task = asyncio.create_task(self._tick())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def measure(calls: int, repeat: int) -> list[float]:
    with tempfile.TemporaryDirectory() as directory:
        stores = await open_sqlite(Path(directory), event_log_retention=100)
        try:
            clock = SystemClock()
            issuer = Issuer.ephemeral("meshwarden.local", clock)
            receipts = Receipts(stores.receipts, clock, trust_bundle_pem=issuer.bundle_pem)
            outcomes = Outcomes(stores.outcomes, clock)
            started = time.perf_counter()
            end = await fill(receipts, outcomes, issuer, calls)
            fill_s = time.perf_counter() - started
            queries = SessionQueries(receipts, outcomes, stores.sessions, clock)
            everything = receipts_pb2.ListSessionsRequest(limit=1000)
            recent = receipts_pb2.ListSessionsRequest(since=_stamp(end - (end - T0) / 100), limit=1000)
            one = receipts_pb2.GetSessionRequest(session_id="s7")
            watch = LoopWatch()
            watch.start()
            stuck = receipts_pb2.ListSessionsRequest(state="running", order="oldest", limit=100)
            figures = [
                fill_s,
                await median_s(lambda: queries.list_sessions(everything, OPERATOR), repeat),
                await median_s(lambda: queries.list_sessions(stuck, OPERATOR), repeat),
                await median_s(lambda: queries.list_sessions(recent, OPERATOR), repeat),
                await median_s(lambda: queries.get_session(one, OPERATOR), repeat),
                await median_s(lambda: queries.costs(receipts_pb2.CostsRequest(by="agent"), OPERATOR), repeat),
                await median_s(lambda: queries.costs(receipts_pb2.CostsRequest(by="model"), OPERATOR), repeat),
                await median_s(lambda: queries.costs(receipts_pb2.CostsRequest(by="refusal"), OPERATOR), repeat),
            ]
            watch.stop()
            return [*figures, watch.longest_s]
        finally:
            await stores.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, nargs="+", default=[40_000])  # 10,000 sessions of four calls
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    print(
        "calls   receipts        fill    list-all       stuck  list-last-1%    show-one  costs-agent  costs-model"
        "  costs-refusal  loop-stall  (seconds)"
    )
    for calls in options.calls:
        figures = asyncio.run(measure(calls, options.repeat))
        print(f"{calls:<7} {calls * 2:<9} " + "  ".join(f"{f:>10.4f}" for f in figures))


if __name__ == "__main__":
    main()
