"""`meshwarden costs --by agent|team|workflow|capability|model|provider [--since 1h]`: spend,
calls, successful outcomes and cost per successful outcome, from the usage of every call
(counted once per call) and the outcomes sessions reported. A model call's usage is measured
by the sidecar's model gateway from the provider's answer and counts for its caller; an agent
call's is what the callee agent reported, and counts for the callee.

A table for people (with a total); `--output json` for scripts. Exit codes as `sessions list`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from meshwarden.cli import exit_codes, registry_access, session_render
from meshwarden.cli.receipts_query import ask_receipts
from meshwarden.cli.time_window import set_window
from meshwarden.v1 import receipts_pb2

KEYS = ("agent", "team", "workflow", "capability", "model", "provider", "version", "caller", "agent-model", "refusal")


def add_to(commands: Any) -> None:
    costs = commands.add_parser(
        "costs",
        help="spend, calls and cost per successful outcome",
        description="Groups the calls' usage by agent, team, workflow, capability, model, provider, agent "
        "version, caller -> callee, agent x model, or refusal cause (kill switch, budget, approval, policy "
        "ids, or a budget's downgrade to a cheaper model): model calls through the gateway count for their caller, with usage the gateway measured; agent "
        "calls for their callee, with usage the agent reported. A successful outcome is a session that "
        "reported 'succeeded' and has a call in the group; spend on failed sessions is the spend of sessions "
        "that reported 'failed' or 'abandoned'. Without --since/--until the registry answers from totals it "
        "keeps as receipts arrive.",
    )
    costs.add_argument("--by", choices=KEYS, default="agent", help="default agent")
    costs.add_argument("--since", default="", metavar="AGE|TIME", help="e.g. 1h, 30m, 2026-11-21T08:00Z")
    costs.add_argument("--until", default="", metavar="AGE|TIME", help="e.g. 5m, 2026-11-21T09:00Z")
    costs.add_argument("--output", choices=["table", "json"], default="table", help="default table")
    costs.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="default 10")
    registry_access.add_registry_flags(costs)
    costs.set_defaults(run=_costs)


def costs_request(by: str, since: str, now: float, until: str = "") -> receipts_pb2.CostsRequest:
    request = receipts_pb2.CostsRequest(by=by)
    set_window(request, since=since, until=until, now=now)
    return request


def _costs(args: argparse.Namespace) -> int:
    command = "meshwarden costs"
    try:
        request = costs_request(args.by, args.since, time.time(), args.until)
    except ValueError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    code, reply = ask_receipts(command, args, "Costs", request)
    if reply is None:
        return code
    rows = list(reply.rows)
    if args.output == "json":
        print(json.dumps([session_render.cost_json(r) for r in rows], indent=2))
    elif rows:
        print(session_render.costs_table(args.by, rows))
    else:
        print("(no calls in that window)", file=sys.stderr)
    return exit_codes.OK
