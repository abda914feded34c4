"""Receipts on a live mesh: both sidecars' receipts reach the registry with what happened to
each call; a registry or a sidecar killed -9 under load loses none of a call the client saw
complete; an edited or deleted row in registry.db is caught by `meshwarden receipts verify`,
run as the real CLI. The agents are `support` (team support) calling `billing` (team finance)
of the starting bundle."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

import meshwarden
from meshwarden import errors
from meshwarden.receipt_hash import payload_digest
from meshwarden.supervise import Child, meshwarden_argv
from meshwarden.v1 import receipts_pb2
from tests.integration.bundles import ALLOW_ALL
from tests.integration.mesh import LocalMesh
from tests.integration.test_calls import routable
from tests.system_tools import require_program

pytestmark = pytest.mark.integration

SHIP_FAST = ("--receipt-ship-interval-s", "0.2")
NO_SLEEPING = (
    '@id("no-sleeping")\n@reason("the test forbids probe.sleep")\n'
    'forbid (principal, action, resource == Capability::"probe.sleep");\n'
)
Receipts = list[receipts_pb2.Receipt]


def stored(mesh: LocalMesh) -> Receipts:
    """Every receipt in the registry's database, read as a person with the file would."""
    db = sqlite3.connect(mesh.registry_data_dir / "registry.db")
    try:
        rows = db.execute("SELECT body FROM receipts ORDER BY sidecar_instance_id, seq").fetchall()
    finally:
        db.close()
    found: Receipts = []
    for (body,) in rows:
        receipt = receipts_pb2.Receipt()
        receipt.ParseFromString(body)
        found.append(receipt)
    return found


async def stored_when(mesh: LocalMesh, done: Callable[[Receipts], bool], what: str, timeout_s: float = 30) -> Receipts:
    deadline = time.monotonic() + timeout_s
    while True:
        receipts = stored(mesh)
        if done(receipts):
            return receipts
        assert time.monotonic() < deadline, f"{what}: the registry holds {len(receipts)} receipt(s)"
        await asyncio.sleep(0.1)


def both_directions_of(call_ids: set[str]) -> Callable[[Receipts], bool]:
    def done(receipts: Receipts) -> bool:
        seen = {(r.call_id, r.direction) for r in receipts}
        return all((c, d) in seen for c in call_ids for d in ("outbound", "inbound"))

    return done


def verify_cli(mesh: LocalMesh, *extra: str) -> subprocess.CompletedProcess[str]:
    if mesh.registry is None:
        raise AssertionError("no registry")
    argv = meshwarden_argv(
        "receipts",
        "verify",
        "--registry",
        mesh.registry_address,
        "--ca-pin",
        mesh.registry.addresses["ca_fingerprint"],
        "--operator-token-file",
        str(mesh.registry_data_dir / "operator.token"),
        *extra,
    )
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def sqlite3_cli(mesh: LocalMesh, statement: str) -> None:
    """An edit behind the registry's back, with the sqlite3 command-line tool."""
    tool = require_program("sqlite3", "sqlite3")
    subprocess.run([tool, str(mesh.registry_data_dir / "registry.db"), statement], check=True, timeout=30)


async def support_calls_billing(mesh: LocalMesh, *caller_flags: str, data_dir: Path | None = None) -> Child:
    """Sidecars for support (the caller) and billing with its probe agent; returns support's."""
    support = await mesh.sidecar("support", *SHIP_FAST, *caller_flags, data_dir=data_dir)
    await mesh.agent(await mesh.sidecar("billing", *SHIP_FAST))
    return support


async def test_both_sidecars_receipts_reach_the_registry_with_what_happened(mesh: LocalMesh) -> None:
    await mesh.push_bundle(
        mesh.bundles.make(2, {"allow-all.cedar": ALLOW_ALL, "no-sleeping.cedar": NO_SLEEPING}, store_raw_arguments=True)
    )
    support = await support_calls_billing(mesh)
    async with meshwarden.Client(support.addresses["listen"]) as client:
        await routable(client, "probe.runs")
        ok = await client.invoke("echo", {"text": "hi"}, session_id="s-1", workflow_id="w-1", timeout=5)
        with pytest.raises(errors.AgentFailed):
            await client.invoke("probe.fail", {}, session_id="s-1", timeout=5)
        with pytest.raises(errors.PolicyDenied):
            await client.invoke("probe.sleep", {"seconds": 0}, session_id="s-1", timeout=5)
        with pytest.raises(errors.UnknownCapability):
            await client.invoke("nobody.here", {}, session_id="s-1", timeout=5)
    receipts = await stored_when(mesh, lambda rs: sum(r.session_id == "s-1" for r in rs) == 6, "session s-1")
    session = [r for r in receipts if r.session_id == "s-1"]
    by_call = {(r.capability, r.direction): r for r in session}

    out, inb = by_call["echo", "outbound"], by_call["echo", "inbound"]
    support_id, billing_id = support.addresses["spiffe_id"], out.callee_spiffe_id
    assert (out.sidecar_instance_id, out.sidecar_spiffe_id) == (support.addresses["instance_id"], support_id)
    assert (inb.sidecar_instance_id, inb.sidecar_spiffe_id) == (ok.instance_id, billing_id)
    assert billing_id.endswith("/agent/billing") and out.call_id == inb.call_id == ok.call_id
    for receipt in (out, inb):
        assert (receipt.caller_agent, receipt.caller_spiffe_id, receipt.caller_team) == (
            "support",
            support_id,
            "support",
        )
        assert (receipt.callee_agent, receipt.callee_team, receipt.callee_instance_id) == (
            "billing",
            "finance",
            ok.instance_id,
        )
        assert (receipt.session_id, receipt.workflow_id, receipt.version) == ("s-1", "w-1", "1.0.0")
        assert (receipt.status, receipt.error_kind, receipt.attempt) == ("OK", "", 1)
        assert (receipt.policy_decision, list(receipt.policy_ids), receipt.bundle_revision) == (
            "allow",
            ["allow-all"],
            2,
        )
        assert receipt.arguments_json == b'{"text":"hi"}'  # the bundle asks for raw arguments
        assert receipt.arguments_sha256 == payload_digest(b'{"text":"hi"}')
        assert receipt.latency_us > 0 and receipt.ended_at.ToNanoseconds() >= receipt.started_at.ToNanoseconds()
    assert out.breaker_state == "closed" and out.latency_us >= inb.latency_us

    failed_out, failed_in = by_call["probe.fail", "outbound"], by_call["probe.fail", "inbound"]
    assert failed_out.status == failed_in.status != "OK"
    assert failed_out.error_kind == failed_in.error_kind == "agent_failed"

    denied = by_call["probe.sleep", "outbound"]
    assert ("probe.sleep", "inbound") not in by_call  # refused before it left
    assert (denied.status, denied.error_kind, denied.policy_decision) == ("PERMISSION_DENIED", "policy_denied", "deny")
    assert list(denied.policy_ids) == ["no-sleeping"] and denied.callee_agent == ""
    unknown = by_call["nobody.here", "outbound"]
    assert (unknown.status, unknown.error_kind) == ("NOT_FOUND", "unknown_capability")

    verdict = await mesh.verify_receipts()
    assert verdict.intact and len(verdict.chains) == 2


async def load(client: meshwarden.Client, stop: asyncio.Event, completed: list[str]) -> None:
    """Calls until told to stop, keeping the call id of each call that completed."""
    while not stop.is_set():
        try:
            result = await client.invoke("echo", {"n": len(completed)}, timeout=5)
        except (meshwarden.MeshError, meshwarden.SidecarUnreachable, grpc.aio.AioRpcError):
            await asyncio.sleep(0.01)
            continue
        completed.append(result.call_id)


async def test_a_registry_killed_under_load_loses_no_receipt(mesh: LocalMesh) -> None:
    support = await support_calls_billing(mesh)
    completed: list[str] = []
    async with meshwarden.Client(support.addresses["listen"]) as client:
        await routable(client, "probe.runs")
        stop = asyncio.Event()
        callers = [asyncio.create_task(load(client, stop, completed)) for _ in range(2)]
        await asyncio.sleep(0.5)
        assert mesh.registry is not None
        await mesh.registry.kill()  # kill -9, mid-batch as likely as not
        before_outage = len(completed)
        await asyncio.sleep(0.5)  # calls go on; their receipts wait in the spools
        during_outage = len(completed) - before_outage
        await mesh.restart_registry()
        stop.set()
        await asyncio.gather(*callers)
    assert during_outage > 0, "no call completed while the registry was down"
    await stored_when(mesh, both_directions_of(set(completed)), f"{len(completed)} calls in both directions")
    verdict = await mesh.verify_receipts()
    assert verdict.intact, verdict


async def test_a_sidecar_killed_under_load_loses_no_receipt(mesh: LocalMesh) -> None:
    data_dir = mesh.workdir / "support-sidecar"
    # Shipping every 60 s: nothing the caller spools under load is shipped before it dies.
    steady = ("--instance-id", "support-steady", "--receipt-ship-interval-s", "60")
    support = await support_calls_billing(mesh, *steady, data_dir=data_dir)
    completed: list[str] = []
    async with meshwarden.Client(support.addresses["listen"]) as client:
        await routable(client, "probe.runs")
        stop = asyncio.Event()
        callers = [asyncio.create_task(load(client, stop, completed)) for _ in range(2)]
        await asyncio.sleep(1.0)
        await support.kill()  # kill -9 with calls in flight
        stop.set()
        await asyncio.gather(*callers)
    assert completed
    before = {r.call_id for r in stored(mesh) if r.sidecar_instance_id == "support-steady"}
    assert not before & set(completed), "the caller's receipts were shipped before it was killed"
    await mesh.sidecar("support", *steady, data_dir=data_dir)  # same data dir, same chain
    receipts = await stored_when(mesh, both_directions_of(set(completed)), f"{len(completed)} calls")
    chain = [r.seq for r in receipts if r.sidecar_instance_id == "support-steady"]
    assert chain == list(range(1, len(chain) + 1))
    verdict = await mesh.verify_receipts("support-steady")
    assert verdict.intact and verdict.chains[0].receipts == len(chain), verdict


async def test_receipts_verify_names_an_edited_and_a_deleted_row(mesh: LocalMesh) -> None:
    support = await support_calls_billing(mesh)
    async with meshwarden.Client(support.addresses["listen"]) as client:
        await routable(client, "probe.runs")
        calls = {(await client.invoke("echo", {"n": n}, timeout=5)).call_id for n in range(5)}
    await stored_when(mesh, both_directions_of(calls), "5 calls")
    caller_chain = support.addresses["instance_id"]

    intact = verify_cli(mesh)
    assert intact.returncode == 0, intact.stderr
    assert "all 2 chain(s) intact" in intact.stdout

    echo = next(r.seq for r in stored(mesh) if r.sidecar_instance_id == caller_chain and r.capability == "echo")
    sqlite3_cli(
        mesh, f"UPDATE receipts SET callee_agent = 'kb' WHERE sidecar_instance_id = '{caller_chain}' AND seq = {echo}"
    )
    sqlite3_cli(mesh, f"DELETE FROM receipts WHERE sidecar_instance_id != '{caller_chain}' AND seq = 2")
    edited = verify_cli(mesh, "--output", "json")
    assert edited.returncode == 4, edited.stderr
    report = json.loads(edited.stdout)
    assert report["intact"] is False
    verdicts = {c["sidecar_instance_id"]: c for c in report["chains"]}
    assert verdicts[caller_chain]["problem"] == (
        f"seq {echo}: column callee_agent is 'kb', but the hashed receipt says 'billing' (edited)"
    )
    [callee_chain] = set(verdicts) - {caller_chain}
    assert verdicts[callee_chain]["problem"] == "seq 2 missing (removed)"

    one = verify_cli(mesh, "--sidecar", callee_chain)
    assert one.returncode == 4
    assert f"{callee_chain}" in one.stdout and "TAMPERED: seq 2 missing (removed)" in one.stdout
