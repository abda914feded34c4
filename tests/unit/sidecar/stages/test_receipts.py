"""The receipts stage around fake inner handlers: one receipt per call, however it ends, with
what the inner stages recorded, chained in the spool before the answer goes back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import semantic_version

from meshwarden.errors import PolicyDenied
from meshwarden.policy_bundle.init import starting_files
from meshwarden.receipt_hash import payload_digest
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call, Caller, Reply
from meshwarden.sidecar.catalog import CapabilitySpec, Endpoint
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.sidecar.policy.active_policy import ActivePolicy
from meshwarden.sidecar.receipt_spool import ReceiptSpool, SpoolReader, spool_path
from meshwarden.sidecar.stages import receipts
from meshwarden.usage import Usage
from meshwarden.v1 import receipts_pb2
from tests.policy_helpers import verified
from tests.unit.sidecar.fakes import FakeClock

SUPPORT = "spiffe://meshwarden.local/agent/support"
BILLING = "spiffe://meshwarden.local/agent/billing"
REFUND = Endpoint(
    "billing-1",
    "billing",
    semantic_version.Version("2.4.0"),
    "127.0.0.1:9",
    BILLING,
    CapabilitySpec("billing.refund", "{}", "{}", "sha256:" + "a" * 64),
)


def policy(tmp_path: Path, *, keep_arguments: bool = False) -> PolicyHolder:
    manifest = starting_files()["manifest.toml"]
    if keep_arguments:
        manifest = manifest.replace("store_raw_arguments = false", "store_raw_arguments = true")
    bundle = verified(tmp_path / "bundle", {"manifest.toml": manifest})
    holder = PolicyHolder()
    holder.active = ActivePolicy(bundle, local_agent="support", local_capabilities=[])
    return holder


def spooled(tmp_path: Path) -> list[receipts_pb2.Receipt]:
    reader = SpoolReader(spool_path(tmp_path))
    found: list[receipts_pb2.Receipt] = []
    for chain in reader.chains():
        batch = reader.batch(chain, 1000, 1 << 30)
        for body in batch.bodies if batch else ():
            receipt = receipts_pb2.Receipt()
            receipt.ParseFromString(body)
            found.append(receipt)
    return found


def refund_call(**kw: object) -> Call:
    return Call(
        call_id="call-1",
        capability="billing.refund",
        payload=b'{"amount_cents": 500}',
        caller=Caller("support", "support-1", SUPPORT),
        deadline=1e9,
        session_id="s1",
        workflow_id="w1",
        **kw,  # type: ignore[arg-type]
    )


def stage(tmp_path: Path, direction: receipts.Direction, inner: object, holder: PolicyHolder) -> receipts.Receipts:
    spool = ReceiptSpool.open(tmp_path, instance_id="side-1", spiffe_id=SUPPORT)
    local = LocalAgent("support", "support-1", "127.0.0.1:1", SUPPORT)
    layer = receipts.layer(direction, spool, holder, local, FakeClock())
    handler = layer(inner)  # type: ignore[arg-type]
    assert isinstance(handler, receipts.Receipts)
    return handler


async def test_a_served_call_leaves_a_receipt_with_what_the_inner_stages_recorded(tmp_path: Path) -> None:
    async def inner(call: Call) -> Reply:
        record = call.record
        record.policy_decision, record.policy_ids = "allow", ("refunds-by-support",)
        record.attempt, record.target, record.breaker_state = 2, REFUND, "closed"
        usage = Usage(model="gpt-x", input_tokens=10, output_tokens=5, cost_micro_usd=1234)
        return Reply(b'{"ok":true}', "billing-1", "billing", "2.4.0", usage)

    await stage(tmp_path, "outbound", inner, policy(tmp_path))(refund_call())
    [receipt] = spooled(tmp_path)
    assert (receipt.sidecar_instance_id, receipt.sidecar_spiffe_id, receipt.seq) == ("side-1", SUPPORT, 1)
    assert (receipt.direction, receipt.call_id, receipt.session_id, receipt.workflow_id) == (
        "outbound",
        "call-1",
        "s1",
        "w1",
    )
    assert (receipt.caller_agent, receipt.caller_spiffe_id, receipt.caller_team) == ("support", SUPPORT, "support")
    assert (receipt.callee_agent, receipt.callee_spiffe_id, receipt.callee_team) == ("billing", BILLING, "finance")
    assert (receipt.callee_instance_id, receipt.capability, receipt.version) == ("billing-1", "billing.refund", "2.4.0")
    assert receipt.arguments_sha256 == payload_digest(b'{"amount_cents": 500}')
    assert receipt.arguments_json == b""  # the starting bundle keeps digests only
    assert (receipt.status, receipt.error_kind, receipt.attempt) == ("OK", "", 2)
    assert (receipt.policy_decision, list(receipt.policy_ids), receipt.bundle_revision) == (
        "allow",
        ["refunds-by-support"],
        1,
    )
    assert receipt.breaker_state == "closed"
    assert receipt.usage == receipts_pb2.Usage(model="gpt-x", input_tokens=10, output_tokens=5, cost_micro_usd=1234)
    assert receipt.started_at.seconds == 1_700_001_000 and receipt.ended_at == receipt.started_at
    assert (receipt.trace_id, receipt.span_id) == ("", "")  # the call came with no trace context


async def test_a_refused_call_leaves_a_receipt_naming_the_refusal_and_still_raises(tmp_path: Path) -> None:
    async def inner(call: Call) -> Reply:
        call.record.policy_decision, call.record.policy_ids = "deny", ("refunds-under-100-dollars",)
        raise PolicyDenied("support may not call billing.refund: refunds of 100 dollars or more need finance")

    with pytest.raises(PolicyDenied):
        await stage(tmp_path, "outbound", inner, policy(tmp_path))(refund_call())
    [receipt] = spooled(tmp_path)
    assert (receipt.status, receipt.error_kind) == ("PERMISSION_DENIED", "policy_denied")
    assert receipt.error_message.startswith("support may not call billing.refund")
    assert (receipt.policy_decision, list(receipt.policy_ids)) == ("deny", ["refunds-under-100-dollars"])
    assert (receipt.callee_agent, receipt.attempt) == ("", 0)  # never routed


async def test_a_sidecar_fault_leaves_a_receipt_that_says_so_and_reveals_nothing(tmp_path: Path) -> None:
    async def inner(call: Call) -> Reply:
        raise RuntimeError("secret internal detail")

    with pytest.raises(RuntimeError):
        await stage(tmp_path, "outbound", inner, policy(tmp_path))(refund_call())
    [receipt] = spooled(tmp_path)
    assert (receipt.status, receipt.error_kind) == ("INTERNAL", "internal")
    assert "secret" not in receipt.error_message


async def test_a_cancelled_call_leaves_a_receipt(tmp_path: Path) -> None:
    started = asyncio.Event()

    async def inner(call: Call) -> Reply:
        started.set()
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    task = asyncio.create_task(stage(tmp_path, "outbound", inner, policy(tmp_path))(refund_call()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [receipt] = spooled(tmp_path)
    assert (receipt.status, receipt.error_kind) == ("CANCELLED", "cancelled")


async def test_arguments_are_kept_only_when_the_bundle_says_so(tmp_path: Path) -> None:
    async def inner(call: Call) -> Reply:
        return Reply(b"{}", "billing-1", "billing", "2.4.0")

    await stage(tmp_path, "outbound", inner, policy(tmp_path, keep_arguments=True))(refund_call())
    [receipt] = spooled(tmp_path)
    assert receipt.arguments_json == b'{"amount_cents": 500}'


async def test_an_inbound_receipt_names_the_local_agent_as_callee(tmp_path: Path) -> None:
    async def inner(call: Call) -> Reply:
        return Reply(b"{}", "support-1", "support", "1.0.0")

    caller = Caller("frontdesk", "frontdesk-1", "spiffe://meshwarden.local/agent/frontdesk")
    call = Call(
        call_id="c9", capability="support.resolve_ticket", payload=b"{}", caller=caller, deadline=1e9, attempt=3
    )
    await stage(tmp_path, "inbound", inner, policy(tmp_path))(call)
    [receipt] = spooled(tmp_path)
    assert (receipt.direction, receipt.caller_agent, receipt.caller_team) == ("inbound", "frontdesk", "support")
    assert (receipt.callee_agent, receipt.callee_spiffe_id, receipt.callee_instance_id) == (
        "support",
        SUPPORT,
        "support-1",
    )
    assert (receipt.version, receipt.attempt, receipt.bundle_revision) == ("1.0.0", 3, 1)


async def test_receipts_of_one_sidecar_form_one_chain(tmp_path: Path) -> None:
    async def inner(call: Call) -> Reply:
        return Reply(b"{}", "billing-1", "billing", "2.4.0")

    handler = stage(tmp_path, "outbound", inner, policy(tmp_path))
    for _ in range(3):
        await handler(refund_call())
    chain = spooled(tmp_path)
    assert [r.seq for r in chain] == [1, 2, 3]
    assert [r.prev_hash for r in chain[1:]] == [r.hash for r in chain[:2]]


def test_without_a_spool_the_stage_is_not_there() -> None:
    async def inner(call: Call) -> Reply:
        raise AssertionError("not called")

    assert receipts.layer("outbound", None, PolicyHolder(), LocalAgent("a", "a-1", "", ""), FakeClock())(inner) is inner


async def test_a_traced_call_s_receipt_names_the_span_the_tracing_stage_made(tmp_path: Path) -> None:
    async def inner(call: Call) -> Reply:
        return Reply(b"{}", "billing-1", "billing", "2.4.0")

    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await stage(tmp_path, "outbound", inner, policy(tmp_path))(refund_call(traceparent=traceparent))
    (receipt,) = spooled(tmp_path)
    assert (receipt.trace_id, receipt.span_id) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
