"""`meshwarden budget set|list|lift`: spending caps for a team, a workflow, an agent, a model or
any one session, per day, per month or in total, with an optional soft limit. Set and lift need
the operator token and are audited (`meshwarden audit list`); every sidecar follows the set.

Exit codes: 0 done; 2 bad flags or a budget the registry refuses (INVALID_ARGUMENT); 3 the
registry is unreachable; 1 any other refusal (no operator token, an unknown budget id).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from meshwarden.budget_scopes import (
    PERIOD_BY_NAME,
    PERIOD_NAMES,
    SCOPE_BY_NAME,
    SCOPE_NAMES,
    SESSION,
    BudgetError,
    check_limits,
    check_scope,
    describe,
    parse_usd,
    usd,
)
from meshwarden.cli import controls_access, exit_codes, list_paging, registry_access, session_render
from meshwarden.cli.controls_output import when
from meshwarden.v1 import budgets_pb2, budgets_pb2_grpc

_VALUED = [name for name in SCOPE_BY_NAME if name != "session"]


def add_to(commands: Any) -> None:
    budget = commands.add_parser(
        "budget",
        help="spending caps per team, workflow, agent, model or session (budget set|list|lift)",
        description="Budgets cap what calls may cost, in US dollars, per day, per month or in total. Each call "
        "reserves its worst case before it leaves and settles to its measured cost after; a call a budget "
        "cannot cover is refused with RESOURCE_EXHAUSTED naming the budget.",
    )
    actions = budget.add_subparsers(dest="action", metavar="ACTION", required=True)

    set_ = actions.add_parser("set", help="set a budget, or change the one with the same scope and period")
    scope = set_.add_mutually_exclusive_group(required=True)
    for name in _VALUED:
        scope.add_argument(f"--{name}", metavar=name.upper(), help=f"the budget of one {name}")
    scope.add_argument("--session", action="store_true", help="a cap for any one session")
    set_.add_argument("--per", required=True, choices=list(PERIOD_BY_NAME), help="day and month reset in UTC")
    set_.add_argument("--limit-usd", required=True, metavar="USD", help="calls beyond it are refused, e.g. 50 or 0.25")
    set_.add_argument("--soft-usd", metavar="USD", help="crossing it raises a metric and a log event")
    set_.add_argument("--reason", default="", help="why (kept in the audit log)")
    _common(set_, _set)

    listing = actions.add_parser("list", help="every budget: limit, spent, reserved, remaining in its current period")
    listing.add_argument("--session-id", default="", metavar="ID", help="per-session budgets: this session's figures")
    list_paging.add_flags(listing, "budgets", "by budget id, then subject")
    _common(listing, _list)

    lift = actions.add_parser("lift", help="remove a budget by id (calls stop drawing on it)")
    lift.add_argument("id", metavar="ID")
    lift.add_argument("--reason", default="", help="why (kept in the audit log)")
    _common(lift, _lift)


def _common(parser: argparse.ArgumentParser, action: Any) -> None:
    parser.add_argument("--output", choices=["table", "json"], default="table", help="table (default) or json")
    registry_access.add_registry_flags(parser)
    parser.set_defaults(run=action)


def set_request(args: argparse.Namespace) -> budgets_pb2.SetBudgetRequest:
    """The request the flags describe; BudgetError naming the flag that is wrong."""
    kind: int = SESSION
    value = ""
    if not args.session:
        name = next(n for n in _VALUED if getattr(args, n) is not None)
        kind, value = SCOPE_BY_NAME[name], getattr(args, name)
    value = check_scope(kind, value)
    limit = parse_usd(args.limit_usd, "--limit-usd")
    soft = parse_usd(args.soft_usd, "--soft-usd") if args.soft_usd else 0
    check_limits(limit, soft)
    return budgets_pb2.SetBudgetRequest(
        scope=kind,  # type: ignore[arg-type]
        scope_value=value,
        period=PERIOD_BY_NAME[args.per],  # type: ignore[arg-type]
        limit_micro_usd=limit,
        soft_limit_micro_usd=soft,
        reason=args.reason,
    )


def _set(args: argparse.Namespace) -> int:
    try:
        args.request = set_request(args)
    except BudgetError as exc:
        print(f"meshwarden budget set: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    return controls_access.call_service("meshwarden budget set", args, budgets_pb2_grpc.BudgetsStub, _send_set)


async def _send_set(stub: budgets_pb2_grpc.BudgetsStub, args: argparse.Namespace, metadata: Any) -> int:
    reply: budgets_pb2.SetBudgetResponse = await stub.SetBudget(args.request, metadata=metadata, timeout=10)
    if args.output == "json":
        print(json.dumps({"budget": budget_json(reply.budget), "created": reply.created}))
        return exit_codes.OK
    b = reply.budget
    soft = f", soft limit {usd(b.soft_limit_micro_usd)}" if b.soft_limit_micro_usd else ""
    verb = "set" if reply.created else "changed"
    print(f"budget {b.id} {verb}: {describe(b.scope, b.scope_value)}, {usd(b.limit_micro_usd)} per {_per(b)}{soft}")
    return exit_codes.OK


def _list(args: argparse.Namespace) -> int:
    if not list_paging.check_limit("meshwarden budget list", args.limit):
        return exit_codes.USAGE
    return controls_access.call_service("meshwarden budget list", args, budgets_pb2_grpc.BudgetsStub, _send_list)


async def _send_list(stub: budgets_pb2_grpc.BudgetsStub, args: argparse.Namespace, metadata: Any) -> int:
    request = budgets_pb2.ListBudgetsRequest(session_id=args.session_id, limit=args.limit, cursor=args.cursor)
    reply: budgets_pb2.ListBudgetsResponse = await stub.ListBudgets(request, metadata=metadata, timeout=10)
    list_paging.print_more(reply.next_cursor)
    if args.output == "json":
        print(json.dumps([state_json(s) for s in reply.budgets], indent=2))
        return exit_codes.OK
    if not reply.budgets:
        print("no budgets set")
        return exit_codes.OK
    print(table(reply.budgets))
    return exit_codes.OK


def table(states: Sequence[budgets_pb2.BudgetState]) -> str:
    header = ("ID", "SCOPE", "PER", "PERIOD", "LIMIT", "SPENT", "RESERVED", "REMAINING", "SOFT")
    rows = [header]
    for s in states:
        b = s.budget
        scope = describe(b.scope, b.scope_value) + (f" {s.subject}" if s.subject else "")
        soft = (
            ""
            if not b.soft_limit_micro_usd
            else usd(b.soft_limit_micro_usd) + (" crossed" if s.soft_limit_crossed else "")
        )
        rows.append(
            (
                b.id,
                scope,
                _per(b),
                s.period_key or "-",
                usd(b.limit_micro_usd),
                usd(s.spent_micro_usd),
                usd(s.reserved_micro_usd),
                usd(s.remaining_micro_usd),
                soft,
            )
        )
    return session_render.table(rows)


def _lift(args: argparse.Namespace) -> int:
    return controls_access.call_service("meshwarden budget lift", args, budgets_pb2_grpc.BudgetsStub, _send_lift)


async def _send_lift(stub: budgets_pb2_grpc.BudgetsStub, args: argparse.Namespace, metadata: Any) -> int:
    request = budgets_pb2.LiftBudgetRequest(id=args.id, reason=args.reason)
    reply: budgets_pb2.LiftBudgetResponse = await stub.LiftBudget(request, metadata=metadata, timeout=10)
    if args.output == "json":
        print(json.dumps({"budget": budget_json(reply.budget), "lifted": True}))
        return exit_codes.OK
    b = reply.budget
    print(f"budget {b.id} lifted: {describe(b.scope, b.scope_value)}, {usd(b.limit_micro_usd)} per {_per(b)}")
    return exit_codes.OK


def budget_json(b: budgets_pb2.Budget) -> dict[str, object]:
    return {
        "id": b.id,
        "scope": SCOPE_NAMES.get(b.scope, ""),
        "value": b.scope_value,
        "per": PERIOD_NAMES.get(b.period, ""),
        "limit_micro_usd": b.limit_micro_usd,
        "soft_limit_micro_usd": b.soft_limit_micro_usd,
        "reason": b.reason,
        "created_by": b.created_by,
        "created_at": when(b.created_at),
    }


def state_json(s: budgets_pb2.BudgetState) -> dict[str, object]:
    return {
        **budget_json(s.budget),
        "period": s.period_key,
        "session_id": s.subject,
        "spent_micro_usd": s.spent_micro_usd,
        "reserved_micro_usd": s.reserved_micro_usd,
        "in_flight_micro_usd": s.in_flight_micro_usd,
        "remaining_micro_usd": s.remaining_micro_usd,
        "slices": s.slices,
        "soft_limit_crossed": s.soft_limit_crossed,
        "period_ends_at": when(s.period_ends_at) if s.HasField("period_ends_at") else None,
    }


def _per(b: budgets_pb2.Budget) -> str:
    return PERIOD_NAMES.get(b.period, "?")
