"""Support agent: resolves a ticket by asking the knowledge base and, when the customer was
charged twice, asking billing for a refund: two calls through the mesh per ticket."""

from __future__ import annotations

from typing import Any

import meshwarden
from meshwarden.demo.agent_main import build

agent = build(__doc__ or "")


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
    found = await ctx.invoke("kb.search", {"query": args["text"], "limit": 2})
    articles = found.value["articles"]
    steps.append(
        {"call": "kb.search", "answered_by": f"{found.agent} {found.version}", "articles": [a["id"] for a in articles]}
    )
    resolution = f"sent {', '.join(a['id'] for a in articles) or 'no article'}"
    if args.get("charged_twice_cents"):
        refund = await ctx.invoke(
            "billing.refund",
            {
                "customer_id": args["customer_id"],
                "amount_cents": args["charged_twice_cents"],
                "reason": "duplicate charge",
            },
            version="^2.0.0",
        )
        steps.append(
            {
                "call": "billing.refund",
                "answered_by": f"{refund.agent} {refund.version}",
                "refund_id": refund.value["refund_id"],
            }
        )
        resolution += f" and refunded {args['charged_twice_cents']} cents ({refund.value['refund_id']})"
    return {"ticket_id": args["ticket_id"], "resolution": resolution, "steps": steps}


if __name__ == "__main__":
    agent.run(announce=True)
