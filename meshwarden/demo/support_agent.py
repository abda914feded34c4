"""Support agent: resolves a ticket by asking the knowledge base and, when the customer was
charged twice, asking billing for a refund: two calls through the mesh per ticket. It reads
the ticket with a model through its sidecar's model gateway, and reports the outcome of the ticket's session when the ticket has one."""

from __future__ import annotations

import logging
import sys
from typing import Any

import grpc
import openai

import meshwarden
from meshwarden.demo.agent_main import build
from meshwarden.demo.ticket_tools import TicketReader
from meshwarden.errors import MeshError, PolicyDenied
from meshwarden.outcomes import OutcomeName

log = logging.getLogger(__name__)
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED

tickets, argv = TicketReader.from_argv(sys.argv[1:])  # --tickets-mcp URL: read tickets through the sidecar's MCP
agent, _, models = build(__doc__ or "", argv)


@agent.capability(
    "support.resolve_ticket",
    input_schema={
        "type": "object",
        "required": ["ticket_id", "customer_id", "text"],
        "properties": {
            "ticket_id": {"type": "string"},
            "customer_id": {"type": "string"},
            "text": {"type": "string", "minLength": 1},
            "charged_twice_cents": {"type": "integer", "minimum": 1},
        },
    },
    output_schema={"type": "object", "required": ["ticket_id", "resolution", "steps"]},
)
async def resolve_ticket(args: dict[str, Any], ctx: meshwarden.CallContext) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    if tickets is not None:
        text = await tickets.read(args["ticket_id"], ctx.session_id)
        steps.append(
            {"call": "tickets.read_ticket", "answered_by": "tickets MCP server (through the sidecar)", "text": text}
        )
    try:
        await models.think(ctx, "gpt-4o-mini", f"Classify this ticket: {args['text']}")  # reading the ticket
    except openai.RateLimitError as err:  # the gateway's 429: a budget of this ticket's workflow ran out
        raise meshwarden.HandlerError(
            f"ticket {args['ticket_id']} not handled: {err.message}", RESOURCE_EXHAUSTED
        ) from err
    found = await ctx.invoke("kb.search", {"query": args["text"], "limit": 2})
    articles = found.value["articles"]
    steps.append(
        {"call": "kb.search", "answered_by": f"{found.agent} {found.version}", "articles": [a["id"] for a in articles]}
    )
    resolution = f"sent {', '.join(a['id'] for a in articles) or 'no article'}"
    if args.get("charged_twice_cents"):
        try:
            refund = await ctx.invoke(
                "billing.refund",
                {
                    "customer_id": args["customer_id"],
                    "amount_cents": args["charged_twice_cents"],
                    "reason": "duplicate charge",
                },
                version="^2.0.0",
            )
        except PolicyDenied:
            await _report_outcome(ctx, "failed", f"ticket {args['ticket_id']}: the refund was not allowed")
            raise
        steps.append(
            {
                "call": "billing.refund",
                "answered_by": f"{refund.agent} {refund.version}",
                "refund_id": refund.value["refund_id"],
            }
        )
        resolution += f" and refunded {args['charged_twice_cents']} cents ({refund.value['refund_id']})"
    await _report_outcome(ctx, "succeeded", f"ticket {args['ticket_id']}: {resolution}")
    return {"ticket_id": args["ticket_id"], "resolution": resolution, "steps": steps}


async def _report_outcome(ctx: meshwarden.CallContext, outcome: OutcomeName, detail: str) -> None:
    """A ticket with a session ends it; an outcome the registry cannot take now costs the
    customer nothing, so it is logged rather than failing the ticket."""
    if not ctx.session_id:
        return
    try:
        await ctx.report_outcome(outcome, detail)
    except MeshError as err:
        log.warning("outcome of session %s not recorded: %s", ctx.session_id, err.message)


if __name__ == "__main__":
    agent.run(announce=True)
