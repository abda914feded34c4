"""Budgets through real processes: concurrent calls across two sidecars never commit more than
the cap and use all of it, a refusal names the budget and its numbers, per-session caps, the
soft-limit metric, a sidecar killed -9 gives its slice back within the slice TTL, and the
`meshwarden budget` commands (operator token, JSON, exit codes).

The registry runs with short slices (TTL 2 s, reports every 0.25 s) so the kill test is quick.
Budgets are set before the calling sidecars start: a sidecar takes the budget set before it
serves its first call."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import meshwarden
from meshwarden import errors
from meshwarden.budget_scopes import DAY, SESSION, TOTAL, WORKFLOW
from meshwarden.cli.main import main
from meshwarden.supervise import meshwarden_argv
from meshwarden.v1 import budgets_pb2, budgets_pb2_grpc
from tests.integration.conftest import _FAILED as FAILED
from tests.integration.mesh import LocalMesh
from tests.integration.test_calls import routable
from tests.integration.test_usage import until

pytestmark = pytest.mark.integration

SLICE_TTL_S = 2.0
SYNC_S = 0.25
CENT = 10_000  # micro-USD


@pytest.fixture
async def mesh(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[LocalMesh]:
    local = LocalMesh(tmp_path)
    await local.start_registry(
        "127.0.0.1:0", "", "--budget-slice-ttl-s", str(SLICE_TTL_S), "--budget-sync-s", str(SYNC_S)
    )
    try:
        yield local
    finally:
        await local.close()
        if request.node.stash.get(FAILED, False):
            print(local.logs())


async def set_budget(
    mesh: LocalMesh, scope: int, value: str, period: int, limit: int, soft: int = 0
) -> budgets_pb2.Budget:
    async with await mesh.operator_channel() as channel:
        reply: budgets_pb2.SetBudgetResponse = await budgets_pb2_grpc.BudgetsStub(channel).SetBudget(
            budgets_pb2.SetBudgetRequest(
                scope=scope,  # type: ignore[arg-type]
                scope_value=value,
                period=period,  # type: ignore[arg-type]
                limit_micro_usd=limit,
                soft_limit_micro_usd=soft,
                reason="test",
            ),
            metadata=mesh.operator_metadata(),
            timeout=10,
        )
    return reply.budget


async def states(mesh: LocalMesh, session_id: str = "") -> dict[tuple[str, str], budgets_pb2.BudgetState]:
    async with await mesh.operator_channel() as channel:
        reply: budgets_pb2.ListBudgetsResponse = await budgets_pb2_grpc.BudgetsStub(channel).ListBudgets(
            budgets_pb2.ListBudgetsRequest(session_id=session_id), metadata=mesh.operator_metadata(), timeout=10
        )
    return {(s.budget.id, s.subject): s for s in reply.budgets}


def work(cost: int) -> dict[str, Any]:
    """probe.work reports this usage: the callee's measured cost, settled against the budget."""
    return {"usage": {"model": "m", "input_tokens": 1, "output_tokens": 1, "cost_micro_usd": cost}}


async def test_fifty_concurrent_calls_on_two_sidecars_commit_at_most_the_cap(mesh: LocalMesh) -> None:
    cap = await set_budget(mesh, WORKFLOW, "wf-cap", TOTAL, 10 * 10 * CENT)  # fits 10 calls of 10 cents
    await mesh.pair("worker")
    left, right = await mesh.sidecar("front-a"), await mesh.sidecar("front-b")
    async with (
        meshwarden.Client(left.addresses["listen"]) as a,
        meshwarden.Client(right.addresses["listen"]) as b,
    ):
        await routable(a, "probe.work", {})
        await routable(b, "probe.work", {})

        async def one(client: meshwarden.Client) -> bool:
            try:
                await client.invoke(
                    "probe.work", work(10 * CENT), workflow_id="wf-cap", cost_estimate_micro_usd=10 * CENT, timeout=15
                )
                return True
            except errors.BudgetExhausted as refused:
                assert cap.id in refused.message and "workflow wf-cap" in refused.message, refused.message
                return False

        outcomes = await asyncio.gather(*(one(c) for c in [a, b] * 25))
        # Every call fits exactly: the whole cap is used, and nothing beyond it.
        assert sum(outcomes) == 10

        async def all_reported() -> bool:
            return (await states(mesh))[(cap.id, "")].spent_micro_usd == 100 * CENT

        await until(all_reported, "both sidecars' spend reaching the registry")
        state = (await states(mesh))[(cap.id, "")]
        assert (state.spent_micro_usd, state.remaining_micro_usd) == (100 * CENT, 0)
        # Another workflow goes on.
        await a.invoke("probe.work", work(CENT), workflow_id="wf-other", cost_estimate_micro_usd=CENT, timeout=10)


async def test_refusal_session_caps_and_the_soft_limit(mesh: LocalMesh) -> None:
    daily = await set_budget(mesh, WORKFLOW, "wf-small", DAY, 25 * CENT, soft=15 * CENT)
    per_session = await set_budget(mesh, SESSION, "", TOTAL, 30 * CENT)
    await mesh.pair("worker")
    front = await mesh.sidecar("front")
    async with meshwarden.Client(front.addresses["listen"]) as client:
        await routable(client, "probe.work", {})
        call = {"cost_estimate_micro_usd": 20 * CENT, "timeout": 10}
        await client.invoke("probe.work", work(20 * CENT), workflow_id="wf-small", **call)
        with pytest.raises(errors.BudgetExhausted) as refused:
            await client.invoke("probe.work", work(20 * CENT), workflow_id="wf-small", **call)
        message = refused.value.message
        assert refused.value.status_code().name == "RESOURCE_EXHAUSTED"
        for part in (daily.id, "workflow wf-small", "per day", "$0.20", "$0.25 limit", "$0.20 spent"):
            assert part in message, message
        # Each session has its own cap: s-1 is refused its second call, s-2 goes on.
        await client.invoke("probe.work", work(20 * CENT), session_id="s-1", **call)
        with pytest.raises(errors.BudgetExhausted) as capped:
            await client.invoke("probe.work", work(20 * CENT), session_id="s-1", **call)
        assert per_session.id in capped.value.message and "session s-1" in capped.value.message
        await client.invoke("probe.work", work(20 * CENT), session_id="s-2", **call)

    async def crossed() -> bool:
        return (await states(mesh))[(daily.id, "")].soft_limit_crossed

    await until(crossed, "the soft limit reported crossed")
    assert mesh.registry is not None
    metrics = await asyncio.to_thread(_get, f"http://{mesh.registry.addresses['admin']}/metrics")
    assert (
        f'meshwarden_budget_soft_limit_crossings_total{{budget="{daily.id}",scope="workflow wf-small"}} 1.0' in metrics
    )
    assert "budget.soft_limit_crossed" in mesh.registry.stderr_text() or "crossed its soft limit" in (
        mesh.registry.stderr_text()
    )
    sessions = await states(mesh, "s-1")
    assert sessions[(per_session.id, "s-1")].spent_micro_usd == 20 * CENT


async def test_a_sidecar_killed_holding_a_slice_gives_it_back_within_the_slice_ttl(mesh: LocalMesh) -> None:
    budget = await set_budget(mesh, WORKFLOW, "wf-kill", TOTAL, 100 * CENT)
    await mesh.pair("worker")
    doomed, survivor = await mesh.sidecar("front-a"), await mesh.sidecar("front-b")
    async with meshwarden.Client(doomed.addresses["listen"]) as a:
        await routable(a, "probe.wait", {"seconds": 0})
        in_flight = asyncio.create_task(
            a.invoke(
                "probe.wait", {"seconds": 30}, workflow_id="wf-kill", cost_estimate_micro_usd=60 * CENT, timeout=40
            )
        )

        async def held() -> bool:
            return (await states(mesh))[(budget.id, "")].in_flight_micro_usd == 60 * CENT

        await until(held, "the in-flight reservation reported")
        doomed.process.kill()  # -9: no goodbye, the slice stays held at the registry
        await doomed.process.wait()
        with pytest.raises(Exception):  # noqa: B017 -- the sidecar is gone; whatever the client says
            await in_flight

    async def released() -> bool:
        state = (await states(mesh))[(budget.id, "")]
        return state.reserved_micro_usd == 0 and state.remaining_micro_usd == 100 * CENT

    # Lapsed SLICE_TTL_S after its last report; one reaper pass and a list call of slack.
    await until(released, "the slice of the killed sidecar lapsing", within_s=SLICE_TTL_S + 3)
    async with meshwarden.Client(survivor.addresses["listen"]) as b:  # the whole budget is usable again
        await routable(b, "probe.work", {})
        await b.invoke(
            "probe.work", work(90 * CENT), workflow_id="wf-kill", cost_estimate_micro_usd=95 * CENT, timeout=10
        )


async def test_the_budget_commands(
    mesh: LocalMesh, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`meshwarden budget` against the real registry: in this process (main() in a thread, as
    the entry point runs it), and once as the installed command."""
    assert mesh.registry is not None
    flags = ["--registry", mesh.registry_address, "--ca-pin", mesh.registry.addresses["ca_fingerprint"]]
    token = ["--operator-token-file", str(mesh.registry_data_dir / "operator.token")]
    monkeypatch.delenv("MESHWARDEN_OPERATOR_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./.meshwarden/registry/operator.token to fall back on

    async def run(*args: str, with_token: bool = True) -> tuple[int, str, str]:
        code = await asyncio.to_thread(main, ["budget", *args, *flags, *(token if with_token else [])])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, err = await run(
        "set", "--team", "finance", "--per", "month", "--limit-usd", "50", "--soft-usd", "40", "--output", "json"
    )
    assert code == 0, err
    budget = json.loads(out)["budget"]
    assert (budget["scope"], budget["value"], budget["per"], budget["limit_micro_usd"]) == (
        "team",
        "finance",
        "month",
        50_000_000,
    )
    code, out, err = await run("set", "--team", "finance", "--per", "month", "--limit-usd", "60")
    assert code == 0 and f"budget {budget['id']} changed" in out, err
    code, out, _ = await run("list", "--output", "json")
    assert [(b["id"], b["limit_micro_usd"], b["remaining_micro_usd"]) for b in json.loads(out)] == [
        (budget["id"], 60_000_000, 60_000_000)
    ]

    # Exit codes: bad flags 2, no operator token 2, a wrong token 1, an unknown id 1.
    assert (await run("set", "--team", "x", "--per", "day", "--limit-usd", "-1"))[0] == 2
    code, _, err = await run("set", "--team", "x", "--per", "day", "--limit-usd", "1", with_token=False)
    assert code == 2 and "operator token" in err
    monkeypatch.setenv("MESHWARDEN_OPERATOR_TOKEN", "not-the-token")
    code, _, err = await run("lift", budget["id"], with_token=False)
    assert code == 1 and "UNAUTHENTICATED" in err
    monkeypatch.delenv("MESHWARDEN_OPERATOR_TOKEN")
    code, _, err = await run("lift", "bg-nope")
    assert code == 1 and "NOT_FOUND" in err and "bg-nope" in err

    # The installed command, table output.
    listed = await asyncio.to_thread(
        subprocess.run,
        meshwarden_argv("budget", "list", *flags, *token),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()[:2]
    assert header.split() == ["ID", "SCOPE", "PER", "PERIOD", "LIMIT", "SPENT", "RESERVED", "REMAINING", "SOFT"]
    assert row.split()[:3] == [budget["id"], "team", "finance"]
    # `set` states the whole budget: the second one gave no soft limit, so none is left.
    assert row.split()[3:] == ["month", row.split()[4], "$60.00", "$0.00", "$0.00", "$60.00"]

    code, out, err = await run("lift", budget["id"], "--reason", "quarter over", "--output", "json")
    assert code == 0 and json.loads(out)["lifted"] is True, err
    assert (await run("list"))[1].strip() == "no budgets set"
    assert await asyncio.to_thread(main, ["audit", "list", "--output", "json", *flags, *token]) == 0
    actions = [e["action"] for e in json.loads(capsys.readouterr().out)]
    assert actions.count("budget.set") == 2 and "budget.lift" in actions


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 -- a loopback test URL
        return str(response.read().decode())
