"""Approvals through real processes: a permit with @approval holds a refund until an operator
decides with the real CLI (`meshwarden approvals ...`). Approved, the waiting call completes;
denied, it is refused with the reason; undecided, it expires (deny by default). Without waiting
the call is answered at once with the approval id; an approval of one refund does not approve
another; a retry after approval goes through once."""

from __future__ import annotations

import asyncio
import json
import subprocess

import grpc
import pytest

import meshwarden
from meshwarden import errors
from meshwarden.supervise import meshwarden_argv
from meshwarden.v1 import approvals_pb2, approvals_pb2_grpc, controls_pb2, controls_pb2_grpc, receipts_pb2
from tests.integration.mesh import LocalMesh
from tests.integration.test_calls import routable
from tests.integration.test_controls import cli
from tests.integration.test_policy import billing_pair

pytestmark = pytest.mark.integration

POLICIES = {
    "approvals.cedar": """
@id("everything-else")
permit (principal, action, resource) unless { resource == Capability::"billing.refund" };

@id("refund-small")
permit (principal, action == Action::"call", resource == Capability::"billing.refund")
when { context.args has amount_cents && context.args.amount_cents < 10000 };

@id("refund-large")
@approval("refund of 100 dollars or more")
permit (principal, action == Action::"call", resource == Capability::"billing.refund")
when { context.args has amount_cents && context.args.amount_cents >= 10000 && context.args.amount_cents < 90000 };

@id("refund-huge")
@approval("refund of 900 dollars or more: decide within 2 s")
@approval_ttl_s("2")
permit (principal, action == Action::"call", resource == Capability::"billing.refund")
when { context.args has amount_cents && context.args.amount_cents >= 90000 };
"""
}


async def approval_mesh(mesh: LocalMesh) -> meshwarden.Client:
    await mesh.push_bundle(mesh.bundles.make(2, POLICIES))
    support = await mesh.sidecar("support")
    await billing_pair(mesh)
    client = meshwarden.Client(support.addresses["listen"])
    await routable(client, "billing.refund", payload={"customer_id": "C1", "amount_cents": 100})
    return client


async def pending(mesh: LocalMesh) -> approvals_pb2.Approval:
    """The one pending approval, once the held call has asked for it (operator API)."""
    async with await mesh.operator_channel() as channel:
        stub = approvals_pb2_grpc.ApprovalsStub(channel)
        for _ in range(200):
            reply = await stub.ListApprovals(
                approvals_pb2.ListApprovalsRequest(), metadata=mesh.operator_metadata(), timeout=5
            )
            if reply.approvals:
                [found] = reply.approvals
                return found
            await asyncio.sleep(0.05)
    raise AssertionError("no approval became pending")


async def audited(mesh: LocalMesh) -> list[str]:
    async with await mesh.operator_channel() as channel:
        reply = await controls_pb2_grpc.ControlsStub(channel).ListAudit(
            controls_pb2.ListAuditRequest(), metadata=mesh.operator_metadata(), timeout=5
        )
    return [entry.action for entry in reply.entries]


async def approved_receipt(mesh: LocalMesh, session_id: str) -> receipts_pb2.Receipt:
    """The caller's receipt of the approved call, once shipped (receipts arrive in batches)."""
    for _ in range(100):
        try:
            reply = await mesh.ask_receipts("GetSession", receipts_pb2.GetSessionRequest(session_id=session_id))
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise
        else:
            found = [r for r in reply.receipts if r.direction == "outbound" and r.approval_id]
            if found:
                return found[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no receipt of session {session_id} names an approval")


async def test_a_waiting_call_completes_when_approved_is_refused_when_denied_or_expired(mesh: LocalMesh) -> None:
    client = await approval_mesh(mesh)
    async with client:
        small = await client.invoke("billing.refund", {"customer_id": "C1", "amount_cents": 500}, timeout=10)
        assert small.value["status"] == "issued"  # a plain permit matched: no approval needed

        refund = {"customer_id": "C7", "amount_cents": 25000, "reason": "broken on arrival"}
        waiting = asyncio.create_task(client.invoke("billing.refund", refund, timeout=30, session_id="s-approve"))
        held = await pending(mesh)
        [asked] = json.loads(await cli(mesh, "approvals", "list", "--output", "json"))
        assert asked["id"] == held.id and asked["agent"] == "support" and asked["arguments"] == refund
        assert asked["risk_factors"] == ["refund of 100 dollars or more"] and asked["policy_ids"] == ["refund-large"]
        shown = await cli(mesh, "approvals", "show", asked["id"])
        assert "support" in shown and "billing.refund" in shown and '"amount_cents": 25000' in shown
        assert "refund of 100 dollars or more" in shown and "s-approve" in shown
        assert not waiting.done()
        decided = await cli(mesh, "approvals", "approve", asked["id"], "--reason", "customer verified by phone")
        assert "approved" in decided
        result = await waiting
        assert result.value["status"] == "issued" and result.value["amount_cents"] == 25000
        assert "customer verified by phone" in decided
        await cli(mesh, "approvals", "approve", asked["id"], "--reason", "again", expect=6)  # no longer pending

        denied_call = asyncio.create_task(
            client.invoke("billing.refund", {"customer_id": "C8", "amount_cents": 30000}, timeout=30)
        )
        second = await pending(mesh)
        await cli(mesh, "approvals", "deny", second.id, "--reason", "second refund this week; escalate to finance")
        with pytest.raises(errors.ApprovalDenied) as denied:
            await denied_call
        assert denied.value.status_code() is grpc.StatusCode.PERMISSION_DENIED
        assert denied.value.decision == "denied" and denied.value.approval_id == second.id
        assert "second refund this week; escalate to finance" in denied.value.message

        with pytest.raises(errors.ApprovalDenied) as expired:  # nobody decides within its 2 s
            await client.invoke("billing.refund", {"customer_id": "C9", "amount_cents": 95000}, timeout=30)
        assert expired.value.decision == "expired"

        actions = await audited(mesh)
        for action in ("approval.request", "approval.approve", "approval.use", "approval.deny", "approval.expire"):
            assert action in actions
        receipt = await approved_receipt(mesh, "s-approve")
        assert (receipt.approval_id, receipt.approval_decision) == (held.id, "approved")
        assert receipt.approver.startswith("operator:sha256:") and receipt.status == "OK"


async def test_without_waiting_the_id_comes_back_and_binds_the_exact_arguments_once(mesh: LocalMesh) -> None:
    client = await approval_mesh(mesh)
    refund = {"customer_id": "C3", "amount_cents": 40000}
    async with client:
        with pytest.raises(errors.ApprovalPending) as held:
            await client.invoke("billing.refund", refund, timeout=10, wait_for_approval=False)
        assert held.value.status_code() is grpc.StatusCode.FAILED_PRECONDITION
        approval_id = held.value.approval_id
        assert approval_id.startswith("ap-") and approval_id in held.value.message

        table = await cli(mesh, "approvals", "list")
        assert approval_id in table and "billing.refund" in table and "pending" in table
        await cli(mesh, "approvals", "approve", approval_id, "--reason", "ok", "--output", "json")

        other = {"customer_id": "C3", "amount_cents": 80000}  # the approval is for 40000, not this
        with pytest.raises(errors.ApprovalDenied) as replay:
            await client.invoke("billing.refund", other, timeout=10, wait_for_approval=False, approval_id=approval_id)
        assert replay.value.decision == "mismatch" and replay.value.approval_id == approval_id

        done = await client.invoke("billing.refund", refund, timeout=10, approval_id=approval_id)
        assert done.value["amount_cents"] == 40000
        with pytest.raises(errors.ApprovalDenied) as again:  # single use
            await client.invoke("billing.refund", refund, timeout=10, approval_id=approval_id)
        assert again.value.decision == "used"

        await cli(mesh, "approvals", "show", "ap-000000000000", expect=5)
        assert mesh.registry is not None
        wrong = mesh.workdir / "wrong.token"
        wrong.write_text("not-the-operator-token\n")
        wrong.chmod(0o600)
        refused = await asyncio.to_thread(
            subprocess.run,
            meshwarden_argv(
                *("approvals", "approve", approval_id, "--reason", "x", "--registry", mesh.registry_address),
                *("--ca-pin", mesh.registry.addresses["ca_fingerprint"], "--operator-token-file", str(wrong)),
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr, refused.stderr
