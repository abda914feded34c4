"""Billing agent: issues refunds. Amounts are integer cents: JSON integers stay integers."""

from __future__ import annotations

import uuid
from typing import Any

import meshwarden
from meshwarden.demo.agent_main import build

agent, _, models = build(__doc__ or "")


@agent.capability(
    "billing.refund",
    input_schema={
        "type": "object",
        "required": ["customer_id", "amount_cents"],
        "properties": {
            "customer_id": {"type": "string", "pattern": "^C[0-9]+$"},
            "amount_cents": {"type": "integer", "minimum": 1, "maximum": 1000000},
            "reason": {"type": "string"},
        },
        "additionalProperties": False,
    },
    output_schema={"type": "object", "required": ["refund_id", "amount_cents", "status"]},
)
async def refund(args: dict[str, Any], ctx: meshwarden.CallContext) -> dict[str, Any]:
    """Issues a refund and answers with its id."""
    await models.think(ctx, "claude-3-5-haiku", f"Check this refund: {args.get('reason', '')}")  # the refund check
    return {
        "refund_id": f"R-{uuid.uuid4().hex[:8]}",
        "amount_cents": args["amount_cents"],
        "status": "issued",
        "by_version": agent.version,
        "by_instance": agent.instance_id,
    }


if __name__ == "__main__":
    agent.run(announce=True)
