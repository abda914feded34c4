"""`meshwarden sessions list` and `meshwarden session show ID`: what sessions ran, and what one
of them did, call by call and as a tree of who called whom, rebuilt by the registry from the
receipts both sidecars of each call wrote. Receipts reach the registry in batches, so a call
shows up a moment after it ended.

A table for people; `--output json` for scripts. Exit codes: 0 shown, 1 the registry refused
(an unknown session included), 2 bad flags, 3 registry unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from meshwarden import session_labels
from meshwarden.cli import exit_codes, registry_access, session_render, sessions_suspect
from meshwarden.cli.receipts_query import ask_receipts
from meshwarden.cli.time_window import set_window
from meshwarden.v1 import receipts_pb2


def add_to(commands: Any) -> None:
    sessions = commands.add_parser("sessions", help="sessions the registry holds receipts for")
    actions = sessions.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        help="list sessions, newest activity first",
        description="Lists sessions with their state (running until an agent reports an outcome), calls and "
        "cost. --since/--until select the calls in that window.",
    )
    listing.add_argument(
        "--state",
        choices=["running", "finished", "succeeded", "failed", "abandoned"],
        default="",
        help="default all; an outcome selects the finished sessions that reported it",
    )
    listing.add_argument(
        "--order",
        choices=["newest", "oldest"],
        default="newest",
        help="by last activity; oldest with --state running puts the longest idle (stuck) sessions first",
    )
    listing.add_argument("--cursor", default="", metavar="CURSOR", help="the next page: the cursor a page printed")
    listing.add_argument("--agent", default="", metavar="NAME", help="only sessions this agent took part in")
    listing.add_argument("--team", default="", metavar="TEAM", help="only sessions an agent of this team took part in")
    listing.add_argument("--workflow", default="", metavar="ID", help="only sessions of this workflow")
    listing.add_argument(
        "--started-for", default="", metavar="PRINCIPAL", help="only sessions started for this user or service"
    )
    listing.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only sessions started with this label (e.g. repository=acme/api); repeat: all must match",
    )
    listing.add_argument("--since", default="", metavar="AGE|TIME", help="e.g. 1h, 30m, 2026-11-21T08:00Z")
    listing.add_argument("--until", default="", metavar="AGE|TIME", help="e.g. 5m, 2026-11-21T09:00Z")
    listing.add_argument("--limit", type=int, default=100, metavar="N", help="default 100, at most 1000")
    _common(listing)
    listing.set_defaults(run=_list)
    sessions_suspect.add_to(actions, _common)

    session = commands.add_parser("session", help="one session's timeline")
    session_actions = session.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = session_actions.add_parser(
        "show",
        help="a session's calls in order and as a tree of who called whom",
        description="Each call with its capability, callee version, policy decision, attempt, latency, status, "
        "usage and cost, in order, then as a tree (parent_call_id).",
    )
    show.add_argument("session_id", metavar="ID")
    _common(show)
    show.set_defaults(run=_show)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", choices=["table", "json"], default="table", help="default table")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="default 10")
    registry_access.add_registry_flags(parser)


def list_request(args: argparse.Namespace, now: float) -> receipts_pb2.ListSessionsRequest:
    """The request the flags ask for; ValueError naming a bad flag."""
    if not 1 <= args.limit <= 1000:
        raise ValueError(f"--limit must be from 1 to 1000, got {args.limit}")
    request = receipts_pb2.ListSessionsRequest(
        state=args.state,
        agent=args.agent,
        team=args.team,
        workflow_id=args.workflow,
        limit=args.limit,
        order=args.order,
        cursor=args.cursor,
        started_for=args.started_for,
        labels=dict(_labels(args.label)),
    )
    set_window(request, since=args.since, until=args.until, now=now)
    return request


def _labels(given: list[str]) -> session_labels.Labels:
    """--label KEY=VALUE flags as labels; InvalidLabels (a ValueError) naming a bad one."""
    pairs: dict[str, str] = {}
    for text in given:
        key, equals, value = text.partition("=")
        if not equals:
            raise session_labels.InvalidLabels(f"--label {text[:40]!r} is not KEY=VALUE (e.g. repository=acme/api)")
        if key in pairs:
            raise session_labels.InvalidLabels(f"--label {key[:40]!r} is given twice; a session has one value per key")
        pairs[key] = value
    return session_labels.checked(pairs)


def _list(args: argparse.Namespace) -> int:
    command = "meshwarden sessions list"
    try:
        request = list_request(args, time.time())
    except ValueError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    code, reply = ask_receipts(command, args, "ListSessions", request)
    if reply is None:
        return code
    sessions = list(reply.sessions)
    if args.output == "json":
        print(json.dumps([session_render.session_json(s) for s in sessions], indent=2))
    elif sessions:
        print(session_render.sessions_table(sessions))
    else:
        print("(no sessions match)", file=sys.stderr)
    if reply.next_cursor:  # stderr, so the table and the JSON stay what they were
        print(f"more: --cursor {reply.next_cursor}", file=sys.stderr)
    return exit_codes.OK


def _show(args: argparse.Namespace) -> int:
    request = receipts_pb2.GetSessionRequest(session_id=args.session_id)
    code, reply = ask_receipts("meshwarden session show", args, "GetSession", request)
    if reply is None:
        return code
    if args.output == "json":
        print(json.dumps(session_render.timeline_json(reply), indent=2))
    else:
        print(session_render.timeline(reply))
    return exit_codes.OK
