"""What budgets cost: a reservation on the hot path, and the registry's slice RPCs.

    PYTHONPATH=. .venv/bin/python benchmarks/budget_reservations.py [--calls 20000] [--repeats 5]
        [--rpc-seconds 5] [--rpc-concurrency 8] [--output table|json]

1. The budget stage in process, around a handler that answers at once, like `stages.py`:
   per-call CPU with no budget set (the stage's fast exit), with budgets set that do not
   apply to the call, and with three budgets in scope (team, workflow, session) reserved from
   slices already held (the hot path: no registry round trip), against the bare handler. The
   slices come from the registry's real `Budgets` on a real SQLite store, in this process,
   granted once; every later call reserves and settles locally. Fastest of `--repeats` runs.
2. The registry's slice RPCs over mTLS: a real registry process, an agent SVID signed by its
   CA, and `--rpc-concurrency` clients calling LeaseSlice (each a write transaction: a slice
   grown by 1 micro-dollar) and SyncSlices (a report of 10 slices) for `--rpc-seconds` each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from meshwarden.budget_scopes import SESSION, TEAM, TOTAL, WORKFLOW
from meshwarden.clock import SystemClock
from meshwarden.identity.spiffe_ids import agent_id
from meshwarden.registry.api.budgets import budget_to_proto, state_to_proto
from meshwarden.registry.audit import Audit
from meshwarden.registry.authz import Caller as RegistryCaller
from meshwarden.registry.budgets import Budgets, BudgetSettings
from meshwarden.registry.issuer import CA_DIR_NAME, Issuer
from meshwarden.registry.store.sqlite import stores_over
from meshwarden.registry.store.sqlite.database import Database
from meshwarden.registry.wire import duration
from meshwarden.registry_client import RegistryTrust, registry_channel
from meshwarden.sidecar.budget_ledger import BudgetLedger
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call, Caller, Handler, Reply
from meshwarden.sidecar.stages import budget
from meshwarden.supervise import meshwarden_argv, registry_health_tls, start
from meshwarden.usage import Usage
from meshwarden.v1 import budgets_pb2, budgets_pb2_grpc

OPERATOR = RegistryCaller(None, 0.0, True, False, "bench", operator_id="operator:bench")
HOLDER = "spiffe://meshwarden.local/agent/bench"
REPLY = Reply(b"{}", "callee-1", "callee", "1.0.0", Usage("m", 10, 10, 50))


class InProcessSlices:
    """LeaseSlice and SyncSlices answered by the registry's Budgets in this process."""

    def __init__(self, budgets: Budgets) -> None:
        self._budgets = budgets

    async def lease(self, request: budgets_pb2.LeaseSliceRequest, timeout: float) -> budgets_pb2.LeaseSliceResponse:
        grant = await self._budgets.lease(
            request.instance_id,
            HOLDER,
            request.budget_id,
            request.subject,
            request.slice_id,
            request.need_micro_usd,
            request.want_micro_usd,
        )
        return budgets_pb2.LeaseSliceResponse(
            slice_id=grant.slice_id,
            granted_micro_usd=grant.granted_micro_usd,
            ttl=duration(3600),
            exhausted=grant.exhausted,
            state=state_to_proto(grant.state),
        )

    async def sync(self, request: budgets_pb2.SyncSlicesRequest, timeout: float) -> budgets_pb2.SyncSlicesResponse:
        return budgets_pb2.SyncSlicesResponse()


async def answer(call: Call) -> Reply:
    return REPLY


async def time_calls(handler: Handler, calls: int, repeats: int, **fields: object) -> float:
    """Fastest microseconds per call over `repeats` runs of `calls` calls."""
    best = float("inf")
    template = Call(call_id="c", capability="echo", payload=b"{}", caller=Caller("bench", "bench-1"), deadline=1e12)
    for _ in range(repeats):
        made = [
            Call(call_id=f"c{n}", capability="echo", payload=b"{}", caller=template.caller, deadline=1e12, **fields)  # type: ignore[arg-type]
            for n in range(calls)
        ]
        started = time.process_time()
        for call in made:
            await handler(call)
        best = min(best, (time.process_time() - started) / calls * 1e6)
    return best


async def stage_costs(calls: int, repeats: int, work: Path) -> dict[str, float]:
    db = Database.open(work / "registry")
    stores = stores_over(db, event_log_retention=10)
    try:
        clock = SystemClock()
        budgets = Budgets(
            stores.budgets,
            clock,
            Audit(stores.audit, clock),
            BudgetSettings(slice_ttl_s=3600),
        )
        ledger = BudgetLedger(clock, InProcessSlices(budgets), "bench-1")
        stage = budget.layer(ledger, PolicyHolder())(answer)
        results = {"bare handler": await time_calls(answer, calls, repeats)}
        results["stage, no budgets set"] = await time_calls(stage, calls, repeats, cost_estimate_micro_usd=100)
        big = 10**14
        for scope, value in ((TEAM, "elsewhere"), (WORKFLOW, "wf-other")):
            await budgets.set(scope, value, TOTAL, big, 0, "", OPERATOR)
        revision, rows = await budgets.current()
        ledger.apply(budgets_pb2.BudgetSet(revision=revision, budgets=[budget_to_proto(b) for b in rows]))
        results["stage, budgets set, none in scope"] = await time_calls(
            stage, calls, repeats, cost_estimate_micro_usd=100, workflow_id="wf-1", session_id="s-1"
        )
        await budgets.set(WORKFLOW, "wf-1", TOTAL, big, 0, "", OPERATOR)
        await budgets.set(SESSION, "", TOTAL, big, 0, "", OPERATOR)
        revision, rows = await budgets.current()
        ledger.apply(budgets_pb2.BudgetSet(revision=revision, budgets=[budget_to_proto(b) for b in rows]))
        # First calls lease the slices (sized from the rate of reservations); then all is local.
        warm = {"cost_estimate_micro_usd": 10**9, "workflow_id": "wf-1", "session_id": "s-1"}
        await time_calls(stage, 100, 1, **warm)
        results["stage, 2 budgets in scope, from slices"] = await time_calls(stage, calls, repeats, **warm)
        return results
    finally:
        db.close()


async def rpc_rates(seconds: float, concurrency: int, work: Path) -> dict[str, float]:
    data_dir = work / "rpc-registry"
    registry = await start(
        "registry",
        meshwarden_argv(
            "registry", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), "--admin-listen", "off",
            "--budget-slice-ttl-s", "3600",
        ),
        log_dir=work / "logs",
        health_tls=registry_health_tls,
        health_address_key="listen",
    )  # fmt: skip
    try:
        issuer = Issuer.load(data_dir / CA_DIR_NAME, SystemClock())
        svid = issuer.issue(agent_id(issuer.trust_domain, "bench"), 3600)
        token = (data_dir / "operator.token").read_text().strip()
        trust = RegistryTrust(issuer.trust_domain, svid.trust_bundle_pem)
        async with registry_channel(registry.addresses["listen"], trust) as operator:
            set_reply = await budgets_pb2_grpc.BudgetsStub(operator).SetBudget(
                budgets_pb2.SetBudgetRequest(
                    scope=WORKFLOW,
                    scope_value="wf",
                    period=TOTAL,
                    limit_micro_usd=10**14,  # type: ignore[arg-type]
                ),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=10,
            )
        budget_id = set_reply.budget.id
        mtls = RegistryTrust(issuer.trust_domain, svid.trust_bundle_pem, svid)
        async with registry_channel(registry.addresses["mtls"], mtls) as channel:
            stub = budgets_pb2_grpc.BudgetsStub(channel)
            slices = []
            for n in range(10):
                grant = await stub.LeaseSlice(
                    budgets_pb2.LeaseSliceRequest(
                        instance_id=f"bench-{n}", budget_id=budget_id, need_micro_usd=1000, want_micro_usd=1000
                    ),
                    timeout=10,
                )
                slices.append(grant.slice_id)
            lease = budgets_pb2.LeaseSliceRequest(
                instance_id="bench-0", budget_id=budget_id, slice_id=slices[0], need_micro_usd=1, want_micro_usd=1
            )
            sync = budgets_pb2.SyncSlicesRequest(
                instance_id="bench-0",
                slices=[budgets_pb2.SliceReport(slice_id=s, used_micro_usd=1, keep_micro_usd=1000) for s in slices],
            )
            leases = await _rate(lambda: stub.LeaseSlice(lease, timeout=10), seconds, concurrency)
            syncs = await _rate(lambda: stub.SyncSlices(sync, timeout=10), seconds, concurrency)
        return {"LeaseSlice per second": leases, "SyncSlices (10 slices) per second": syncs}
    finally:
        await registry.stop()


async def _rate(rpc: object, seconds: float, concurrency: int) -> float:
    done = 0
    end = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < end:
            await rpc()  # type: ignore[operator]
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.monotonic() - started)


async def run(args: argparse.Namespace) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="mw-budget-bench-"))
    try:
        results = await stage_costs(args.calls, args.repeats, work)
        results.update(await rpc_rates(args.rpc_seconds, args.rpc_concurrency, work))
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rpc-seconds", type=float, default=5.0)
    parser.add_argument("--rpc-concurrency", type=int, default=8)
    parser.add_argument("--output", choices=["table", "json"], default="table")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args))
    if args.output == "json":
        print(json.dumps(results, indent=2))
        return 0
    bare = results["bare handler"]
    for name, value in results.items():
        if "per second" in name:
            print(f"{name:<45} {value:>10.0f}")
        else:
            print(f"{name:<45} {value:>8.2f} µs/call  (+{value - bare:.2f} µs over the bare handler)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
