"""The demo's budget part: one workflow hits its daily budget and is refused with a message that
names the budget and its numbers, while the other workflows go on.

The operator sets a daily budget of $0.00025 on workflow "refund-storm" with the real command;
frontdesk sends tickets for it. Support reads each ticket with a model through its sidecar's
gateway, attributed to the ticket's workflow: the gateway reserves the model call's worst case
(about $0.00016) against the budget and settles what the provider reports. Once what is left
cannot cover a worst case, the gateway answers 429 naming the budget; support fails the
ticket with that message. A ticket of another workflow is answered as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import grpc

from meshwarden.client import Client
from meshwarden.errors import MeshError

if TYPE_CHECKING:
    from meshwarden.demo.scenario import Narrator

WORKFLOW: Final = "refund-storm"
Operator = Callable[..., Awaitable[str]]  # runs `meshwarden ARGS...` as a person would; returns its output


async def one_workflow_over_budget(client: Client, operator: Operator, n: Narrator, ticket: dict[str, Any]) -> None:
    n.section(f"Budgets: workflow {WORKFLOW} hits its daily budget and is refused; the others go on")
    await operator("budget", "set", "--workflow", WORKFLOW, "--per", "day", "--limit-usd", "0.00025")
    plain = {k: v for k, v in ticket.items() if k != "charged_twice_cents"}  # no refund: support and kb only
    answered, refusal = 0, None
    for i in range(20):
        try:
            await client.invoke(
                "support.resolve_ticket", {**plain, "ticket_id": f"T-30{i:02d}"}, workflow_id=WORKFLOW, timeout=10
            )
            answered += 1
        except MeshError as err:
            refusal = err
            break
    if (
        refusal is None
        or refusal.status_code() is not grpc.StatusCode.RESOURCE_EXHAUSTED
        or WORKFLOW not in (refusal.message)
    ):
        n.fail(f"{answered} tickets of {WORKFLOW} answered and none refused by its budget")
        return
    n.ok(f"{answered} tickets of {WORKFLOW} answered, the next refused by its budget: RESOURCE_EXHAUSTED")
    n.say(f'      "{refusal.message}"')
    other = await client.invoke(
        "support.resolve_ticket",
        {**plain, "ticket_id": "T-3100"},
        workflow_id="front-desk",
        timeout=10,
    )
    n.ok(f"a ticket of workflow front-desk goes on: {other.value['resolution']}")
    await operator("budget", "list")
