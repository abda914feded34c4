"""Knowledge-base agent: finds help articles for a ticket."""

from __future__ import annotations

import asyncio
from typing import Any

import meshwarden
from meshwarden.demo.agent_main import build

ARTICLES = [
    {"id": "KB-101", "title": "Refunds for duplicate charges", "tags": ["refund", "charge", "duplicate", "billing"]},
    {"id": "KB-207", "title": "Resetting a password", "tags": ["password", "login", "reset"]},
    {"id": "KB-310", "title": "Changing your plan", "tags": ["plan", "upgrade", "billing"]},
]

agent, outage, models = build(__doc__ or "")


@agent.capability(
    "kb.search",
    input_schema={
        "type": "object",
        "required": ["query"],
        "properties": {
            "query": {"type": "string", "minLength": 1},
            "limit": {"type": "integer", "minimum": 1, "maximum": 10},
            "think_s": {"type": "number", "minimum": 0, "maximum": 5},
        },
        "additionalProperties": False,
    },
    output_schema={"type": "object", "required": ["articles"]},
)
async def search(args: dict[str, Any], ctx: meshwarden.CallContext) -> dict[str, Any]:
    """Ranks articles by how many of their tags the query mentions."""
    outage.check()
    if args.get("think_s"):
        await asyncio.sleep(args["think_s"])  # a slow model call, for the deadline part of the demo
    await models.think(ctx, "gpt-4.1-nano", f"Rerank help articles for: {args['query']}")  # reranking the articles
    words = set(args["query"].lower().replace(",", " ").split())
    ranked = sorted(ARTICLES, key=lambda a: -len(words & set(a["tags"])))
    hits = [a for a in ranked if words & set(a["tags"])][: args.get("limit", 3)]
    return {"articles": [{"id": a["id"], "title": a["title"]} for a in hits]}


if __name__ == "__main__":
    agent.run(announce=True)
