"""The demo's approval step: a refund above a limit waits for a person.

The platform team releases a revision in which support's refunds of 100 dollars or more are
permitted with `@approval(...)` instead of forbidden. A ticket with a 150-dollar refund then
waits inside support's call to billing.refund; the demo, as the operator, finds it with
`meshwarden approvals list`, reads the handoff with `approvals show`, and approves it with
`approvals approve`, and the ticket completes. The next revision puts the starting policy back,
so the later sections see the bundle they expect.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from meshwarden.client import Client
from meshwarden.policy_bundle.init import REFUNDS

if TYPE_CHECKING:
    from meshwarden.demo.scenario import Narrator

Release = Callable[[dict[str, str]], Awaitable[None]]
Operator = Callable[..., Awaitable[str]]

REFUNDS_WITH_APPROVAL: Final = """\
@id("refunds-by-support")
@reason("support agents issue refunds under 100 dollars")
permit (principal in Team::"support", action == Action::"call", resource == Capability::"billing.refund")
when { context.args has amount_cents && context.args.amount_cents < 10000 };

@id("refunds-by-finance")
@reason("finance agents issue refunds")
permit (principal in Team::"finance", action == Action::"call", resource == Capability::"billing.refund");

@id("large-refunds-by-support-need-approval")
@approval("refund of 100 dollars or more, asked for by support")
@approval_ttl_s("120")
permit (principal in Team::"support", action == Action::"call", resource == Capability::"billing.refund")
when { context.args has amount_cents && context.args.amount_cents >= 10000 };
"""


async def refund_waits_for_approval(
    client: Client, release: Release, operator: Operator, n: Narrator, ticket: dict[str, Any]
) -> None:
    n.section("A refund above a limit waits for a person's approval, given from the CLI")
    await release({"refunds.cedar": REFUNDS_WITH_APPROVAL})
    large = {**ticket, "ticket_id": "T-1600", "charged_twice_cents": 15000}
    started = time.perf_counter()
    waiting = asyncio.create_task(
        client.invoke("support.resolve_ticket", large, timeout=60, session_id="demo-approval")
    )
    approval_id = await _pending_id(operator, n)
    if not approval_id:
        waiting.cancel()
        n.fail("no approval became pending for the 150-dollar refund")
        await release({"refunds.cedar": REFUNDS})
        return
    n.say(f"ticket T-1600 waits: support's billing.refund of 15000 cents is held as {approval_id}")
    await operator("approvals", "show", approval_id)
    await operator("approvals", "approve", approval_id, "--reason", "duplicate charge confirmed in the ledger")
    result = await waiting
    n.ok(
        f"approved, and the waiting ticket completed {time.perf_counter() - started:.1f} s after it started: "
        f"{result.value['resolution']}"
    )
    await release({"refunds.cedar": REFUNDS})  # the starting policy again, for what follows


async def _pending_id(operator: Operator, n: Narrator) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listed = json.loads(await operator("approvals", "list", "--output", "json", quiet=True) or "[]")
        if listed:
            n.say(f"$ meshwarden approvals list: {listed[0]['id']} {listed[0]['agent']} -> {listed[0]['capability']}")
            return str(listed[0]["id"])
        await asyncio.sleep(0.3)
    return ""
