"""The tool-call ledger over a real receipt store: tool receipts only, newest first, filtered
by agent, tool, server, session, decision and time, across pages; bad filters named."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from meshwarden.receipt_hash import receipt_hash
from meshwarden.receipt_signing import sign_head
from meshwarden.registry.api.tools import ToolsApi
from meshwarden.registry.errors import InvalidInput
from meshwarden.registry.issuer import Issuer
from meshwarden.registry.receipts import Receipts
from meshwarden.registry.store import Stores
from meshwarden.v1 import receipts_pb2, tools_pb2
from tests.unit.registry.test_catalog import FakeClock
from tests.unit.registry.test_receipts import BILLING

TOOLS = ("tickets.read_ticket", "tickets.close_ticket", "desk_2.read_ticket")


def tool_chain(count: int) -> list[receipts_pb2.Receipt]:
    """A sidecar's chain: every third call an agent call, the rest tool calls of TOOLS."""
    receipts: list[receipts_pb2.Receipt] = []
    prev = ""
    for seq in range(1, count + 1):
        tool = seq % 3 != 0
        capability = TOOLS[(seq // 3) % len(TOOLS)] if tool else "billing.refund"
        receipt = receipts_pb2.Receipt(
            sidecar_instance_id="billing-1",
            sidecar_spiffe_id=BILLING,
            seq=seq,
            prev_hash=prev,
            direction="outbound",
            call_id=f"call-{seq}",
            session_id=f"s{seq % 2}",
            caller_agent="billing",
            caller_spiffe_id=BILLING,  # the shipper is the caller of its outbound receipts
            capability=capability,
            status="OK",
            policy_decision="deny" if seq % 5 == 0 else "allow",
            call_kind="tool" if tool else "agent",
        )
        receipt.started_at.FromSeconds(1000 + seq)
        receipt.hash = receipt_hash(receipt)
        prev = receipt.hash
        receipts.append(receipt)
    return receipts


@pytest.fixture
async def ledger(stores: Stores) -> AsyncIterator[ToolsApi]:
    issuer = Issuer.ephemeral("mesh.test", FakeClock())
    svid = issuer.issue(BILLING, 3600)
    receipts = Receipts(stores.receipts, FakeClock(), trust_bundle_pem=issuer.bundle_pem)
    chain = tool_chain(1100)  # more than one page of rows
    for batch in (chain[:550], chain[550:]):
        last = batch[-1]
        await receipts.ship(BILLING, batch, sign_head(svid, last.sidecar_instance_id, last.seq, last.hash))
    yield ToolsApi(receipts, FakeClock())


async def ask(ledger: ToolsApi, **fields: object) -> tools_pb2.ListToolCallsResponse:
    request = tools_pb2.ListToolCallsRequest(**fields)  # type: ignore[arg-type]
    request.since.FromSeconds(0)
    if not request.HasField("until"):
        request.until.FromSeconds(10_000)
    return tools_pb2.ListToolCallsResponse.FromString(await ledger.ListToolCalls(request, None))  # type: ignore[arg-type]


async def test_tool_calls_only_newest_first_with_every_filter(ledger: ToolsApi) -> None:
    every = await ask(ledger, limit=600)
    assert every.truncated and len(every.receipts) == 600
    assert all(r.call_kind == "tool" for r in every.receipts)
    seconds = [r.started_at.seconds for r in every.receipts]
    assert seconds == sorted(seconds, reverse=True)
    one = await ask(ledger, tool="tickets.read_ticket", session_id="s1", decision="deny", limit=1000)
    assert one.receipts and all(
        (r.capability, r.session_id, r.policy_decision) == ("tickets.read_ticket", "s1", "deny") for r in one.receipts
    )
    server = await ask(ledger, server="desk_2", limit=1000)
    assert server.receipts and {r.capability for r in server.receipts} == {"desk_2.read_ticket"}
    assert not (await ask(ledger, agent="kb")).receipts


async def test_bad_filters_are_named(ledger: ToolsApi) -> None:
    for fields, name in (({"tool": "no-dot"}, "tool"), ({"decision": "maybe"}, "decision"), ({"limit": 5000}, "limit")):
        with pytest.raises(InvalidInput) as info:
            await ask(ledger, **fields)
        assert info.value.field == name
