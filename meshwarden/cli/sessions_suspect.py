"""`meshwarden sessions suspect`: running sessions that look stuck, looping or burning money,
the longest idle first, with why (operators' question 7). The thresholds are flags; their
defaults are the registry's, which its meshwarden_sessions_suspect gauge counts with.

Exit codes: 0 none found, 8 some found (a script can alert on it), 1 the registry refused,
2 bad flags, 3 registry unreachable, 7 timed out.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, Final

from meshwarden.cli import exit_codes
from meshwarden.cli.receipts_query import ask_insights
from meshwarden.cli.session_render import session_json, started_for, table, usd
from meshwarden.cli.time_window import parse_duration
from meshwarden.clock import iso_utc
from meshwarden.v1 import session_insights_pb2

COLUMNS: Final = (
    "SESSION",
    "REASONS",
    "IDLE-SINCE",
    "REPEATS",
    "RETRIES/SUCCESSES",
    "COST",
    "CALLS",
    "STARTED-FOR",
    "AGENTS",
)


def add_to(actions: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    suspect = actions.add_parser(
        "suspect",
        help="running sessions that look stuck, looping or burning money, longest idle first",
        description="Running sessions past a threshold: repeating (the same capability with the same argument "
        "hash --repeats times), retrying (retries per success above --retries-per-success), spending (at least "
        "--spend USD with no outcome and a call within --spending-within), idle (no call for --idle). "
        "Exit 8 when any is found.",
    )
    suspect.add_argument("--repeats", type=int, default=5, metavar="N", help="default 5")
    suspect.add_argument("--retries-per-success", type=float, default=3.0, metavar="R", help="default 3")
    suspect.add_argument("--spend", type=float, default=1.0, metavar="USD", help="default 1.00")
    suspect.add_argument("--spending-within", default="5m", metavar="AGE", help="default 5m")
    suspect.add_argument("--idle", default="15m", metavar="AGE", help="default 15m")
    suspect.add_argument(
        "--reason", choices=["repeating", "retrying", "spending", "idle"], default="", help="default any reason"
    )
    suspect.add_argument("--cursor", default="", metavar="CURSOR", help="the next page: the cursor a page printed")
    suspect.add_argument("--limit", type=int, default=100, metavar="N", help="default 100, at most 1000")
    common(suspect)
    suspect.set_defaults(run=run)


def request_of(args: argparse.Namespace) -> session_insights_pb2.ListSuspectSessionsRequest:
    """The request the flags ask for; ValueError naming a bad flag."""
    if not 1 <= args.limit <= 1000:
        raise ValueError(f"--limit must be from 1 to 1000, got {args.limit}")
    if args.repeats < 2:
        raise ValueError(f"--repeats must be at least 2, got {args.repeats}")
    if not 0 < args.retries_per_success <= 1000:
        raise ValueError(f"--retries-per-success must be above 0 and at most 1000, got {args.retries_per_success}")
    if not 0 < args.spend <= 1_000_000:
        raise ValueError(f"--spend must be above 0 and at most 1000000 (USD), got {args.spend}")
    windows = {}
    for flag, text in (("spending-within", args.spending_within), ("idle", args.idle)):
        try:
            windows[flag] = int(parse_duration(text))
        except ValueError as exc:
            raise ValueError(f"--{flag}: {exc}") from exc
    return session_insights_pb2.ListSuspectSessionsRequest(
        repeats=args.repeats,
        retries_per_success=args.retries_per_success,
        spend_micro_usd=round(args.spend * 1_000_000),
        spending_within_s=windows["spending-within"],
        idle_s=windows["idle"],
        reason=args.reason,
        limit=args.limit,
        cursor=args.cursor,
    )


def run(args: argparse.Namespace) -> int:
    command = "meshwarden sessions suspect"
    try:
        request = request_of(args)
    except ValueError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    code, reply = ask_insights(command, args, "ListSuspectSessions", request)
    if reply is None:
        return code
    found = list(reply.sessions)
    if args.output == "json":
        print(json.dumps([suspect_json(s) for s in found], indent=2))
    elif found:
        print(table([COLUMNS, *(_row(s) for s in found)]))
    else:
        print("(no suspect sessions)", file=sys.stderr)
    if reply.next_cursor:
        print(f"more: --cursor {reply.next_cursor}", file=sys.stderr)
    return exit_codes.ATTENTION if found else exit_codes.OK


def _row(suspect: session_insights_pb2.SuspectSession) -> tuple[str, ...]:
    s = suspect.summary
    repeats = f"{suspect.max_repeats} x {suspect.repeated_capability}" if suspect.repeated_capability else "-"
    return (
        s.session_id,
        ",".join(suspect.reasons),
        iso_utc(s.last_activity_at.ToNanoseconds() / 1e9),
        repeats,
        f"{suspect.retries}/{suspect.successes}",
        usd(s.cost_micro_usd),
        str(s.calls),
        started_for(s),
        ",".join(s.agents) or "-",
    )


def suspect_json(suspect: session_insights_pb2.SuspectSession) -> dict[str, object]:
    return {
        **session_json(suspect.summary),
        "reasons": list(suspect.reasons),
        "max_repeats": suspect.max_repeats,
        "repeated_capability": suspect.repeated_capability,
        "retries": suspect.retries,
        "successes": suspect.successes,
    }
