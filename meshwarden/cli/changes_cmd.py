"""`meshwarden changes`: which change caused a regression (operators' question 10). For each
change the registry finds in the window's receipts (an agent's version, the model an agent's
calls got, the bundle revision, a tool's schema hash, an operator's route), the calls before
and after it: success rate, cost per successful outcome and latency, with the differences
that are significant at --alpha flagged (a two-proportion z-test on success rate, Mann-Whitney
U on latency; registry.session_changes says how sides are chosen).

A table by default, newest change first; `--output json`. Exit codes: 0 nothing significant,
8 a significant difference found, 1 the registry refused, 2 bad flags, 3 unreachable,
7 timed out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Final

from meshwarden.cli import exit_codes, registry_access
from meshwarden.cli.receipts_query import ask_insights
from meshwarden.cli.session_render import table, usd
from meshwarden.cli.time_window import set_window
from meshwarden.clock import iso_utc
from meshwarden.v1 import session_insights_pb2

COLUMNS: Final = (
    "CHANGED-AT",
    "KIND",
    "SUBJECT",
    "BEFORE",
    "AFTER",
    "CALLS",
    "SUCCESS-RATE",
    "COST/SUCCESS",
    "P50-LATENCY",
    "P99-LATENCY",
    "SIGNIFICANT",
)
_SHOWN_VALUE: Final = 24


def add_to(commands: Any) -> None:
    parser = commands.add_parser(
        "changes",
        help="success rate, cost per success and latency before and after each change, significant ones flagged",
        description="Each change seen in the window's receipts (agent version, model, bundle revision, tool "
        "schema, route) with the calls before and after it. Exit 8 when a difference is significant.",
    )
    parser.add_argument(
        "--kind", choices=["version", "model", "bundle", "tool_schema", "route"], default="", help="default every kind"
    )
    parser.add_argument("--subject", default="", metavar="NAME", help="only this agent, tool or capability")
    parser.add_argument("--since", default="7d", metavar="AGE|TIME", help="default 7d")
    parser.add_argument("--until", default="", metavar="AGE|TIME", help="default now")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level, default 0.05")
    parser.add_argument("--significant", action="store_true", help="only changes with a significant difference")
    parser.add_argument("--cursor", default="", metavar="CURSOR", help="the next page: the cursor a page printed")
    parser.add_argument("--limit", type=int, default=100, metavar="N", help="default 100, at most 1000")
    parser.add_argument("--output", choices=["table", "json"], default="table", help="default table")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="default 10")
    registry_access.add_registry_flags(parser)
    parser.set_defaults(run=run)


def request_of(args: argparse.Namespace, now: float) -> session_insights_pb2.ListChangesRequest:
    """The request the flags ask for; ValueError naming a bad flag."""
    if not 1 <= args.limit <= 1000:
        raise ValueError(f"--limit must be from 1 to 1000, got {args.limit}")
    if not 0 < args.alpha < 0.5:
        raise ValueError(f"--alpha must be above 0 and below 0.5, got {args.alpha}")
    request = session_insights_pb2.ListChangesRequest(
        kind=args.kind, subject=args.subject, alpha=args.alpha, limit=args.limit, cursor=args.cursor
    )
    set_window(request, since=args.since, until=args.until, now=now)
    return request


def run(args: argparse.Namespace) -> int:
    command = "meshwarden changes"
    try:
        request = request_of(args, time.time())
    except ValueError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    code, reply = ask_insights(command, args, "ListChanges", request)
    if reply is None:
        return code
    found = [c for c in reply.changes if c.significant or not args.significant]
    if args.output == "json":
        print(json.dumps([change_json(c) for c in found], indent=2))
    elif found:
        print(table([COLUMNS, *(row for c in found for row in _rows(c))]))
    else:
        print("(no changes in the window)", file=sys.stderr)
    if reply.next_cursor:
        print(f"more: --cursor {reply.next_cursor}", file=sys.stderr)
    return exit_codes.ATTENTION if any(c.significant for c in found) else exit_codes.OK


def _rows(change: session_insights_pb2.Change) -> list[tuple[str, ...]]:
    """Two lines per change: before, then after (with what is significant)."""
    at = iso_utc(change.changed_at.ToNanoseconds() / 1e9)
    flagged = ",".join(f"{m} (p={p:.2g})" for m, p in _tests(change) if m in change.significant) or "-"
    return [
        (at, change.kind, change.subject, _cut(change.before), "", *_side(change.before_side), ""),
        ("", "", "", "", _cut(change.after), *_side(change.after_side), flagged),
    ]


def _tests(change: session_insights_pb2.Change) -> list[tuple[str, float]]:
    return [("success_rate", change.success_rate_p), ("latency", change.latency_p)]


def _side(side: session_insights_pb2.ChangeSide) -> tuple[str, ...]:
    rate = f"{100 * (side.calls - side.failures) / side.calls:.1f}%" if side.calls else "-"
    per_success = usd(side.cost_per_success_micro_usd) if side.successful_outcomes else "-"
    return (
        str(side.calls),
        rate,
        per_success,
        f"{side.latency_p50_us / 1000:.1f}ms",
        f"{side.latency_p99_us / 1000:.1f}ms",
    )


def _cut(value: str) -> str:
    return value if len(value) <= _SHOWN_VALUE else value[: _SHOWN_VALUE - 3] + "..."


def change_json(change: session_insights_pb2.Change) -> dict[str, object]:
    def side(s: session_insights_pb2.ChangeSide) -> dict[str, object]:
        return {
            "calls": s.calls,
            "failures": s.failures,
            "success_rate": (s.calls - s.failures) / s.calls if s.calls else None,
            "cost_micro_usd": s.cost_micro_usd,
            "successful_outcomes": s.successful_outcomes,
            "cost_per_success_micro_usd": s.cost_per_success_micro_usd if s.successful_outcomes else None,
            "latency_p50_us": s.latency_p50_us,
            "latency_p99_us": s.latency_p99_us,
        }

    return {
        "kind": change.kind,
        "subject": change.subject,
        "before": change.before,
        "after": change.after,
        "changed_at": change.changed_at.ToJsonString(),
        "before_side": side(change.before_side),
        "after_side": side(change.after_side),
        "success_rate_p": change.success_rate_p,
        "latency_p": change.latency_p,
        "significant": list(change.significant),
    }
