"""`meshwarden audit list [--since 1h|2026-11-21T09:00:00Z] [--output json]`: who did what to
the mesh, when and why (kill switches, isolations, bundle pushes, route changes). Operator token."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sys
import time
from typing import Any

import grpc

from meshwarden.cli import exit_codes, registry_access
from meshwarden.cli.controls_output import parse_duration, when
from meshwarden.cli.session_render import table
from meshwarden.control_scopes import ScopeError
from meshwarden.registry_client import registry_channel
from meshwarden.v1 import controls_pb2, controls_pb2_grpc


def add_to(commands: Any) -> None:
    audit = commands.add_parser("audit", help="who did what to the mesh, when and why")
    actions = audit.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="operator writes, oldest first (operator token)")
    listing.add_argument(
        "--since", metavar="WHEN", help="a duration back from now (30m, 2h, 7d) or an ISO 8601 time (UTC if no zone)"
    )
    listing.add_argument("--limit", type=int, default=1000, help="at most this many, the newest (default 1000)")
    listing.add_argument(
        "--cursor", default="", metavar="CURSOR", help="the older page: the cursor the previous page printed"
    )
    listing.add_argument("--output", choices=["table", "json"], default="table", help="table (default) or json")
    registry_access.add_registry_flags(listing)
    listing.set_defaults(run=_list)


def parse_since(text: str, now: float) -> float:
    """'2h' -> now - 7200; '2026-11-21T09:00:00Z' -> that instant (epoch seconds)."""
    try:
        return now - parse_duration(text, "--since")
    except ScopeError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ScopeError(f"--since {text!r} must be a duration such as 2h or an ISO 8601 time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _list(args: argparse.Namespace) -> int:
    command = "meshwarden audit list"
    request = controls_pb2.ListAuditRequest(limit=max(args.limit, 1), cursor=args.cursor)
    if args.since:
        try:
            request.since.FromMicroseconds(int(parse_since(args.since, time.time()) * 1e6))
        except ScopeError as exc:
            print(f"{command}: {exc}", file=sys.stderr)
            return exit_codes.USAGE
    try:
        access = registry_access.resolve(args, os.environ)
        reply = asyncio.run(_fetch(access, request))
    except registry_access.AccessError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error(command, err, args.registry or "the registry")
    if reply.next_cursor:  # stderr, so the table and the JSON stay what they were
        print(f"more (older): --cursor {reply.next_cursor}", file=sys.stderr)
    if args.output == "json":
        print(json.dumps([_entry_json(e) for e in reply.entries], indent=2))
        return exit_codes.OK
    if not reply.entries:
        print("no audit entries")
        return exit_codes.OK
    rows = [("WHEN", "ACTOR", "ACTION", "TARGET", "REASON / DETAIL")]
    for e in reply.entries:
        actor = e.actor + (f" ({e.claimed_user})" if e.claimed_user else "")
        why = " / ".join(part for part in (e.reason, e.detail) if part)
        rows.append((when(e.at), actor, e.action, e.target, why))
    print(table(rows))
    return exit_codes.OK


def _entry_json(e: controls_pb2.AuditEntry) -> dict[str, object]:
    return {
        "id": e.id,
        "at": when(e.at),
        "actor": e.actor,
        "claimed_user": e.claimed_user,
        "action": e.action,
        "target": e.target,
        "reason": e.reason,
        "detail": e.detail,
    }


async def _fetch(access: registry_access.RegistryAccess, request: controls_pb2.ListAuditRequest) -> Any:
    async with registry_channel(access.address, access.trust) as channel:
        return await controls_pb2_grpc.ControlsStub(channel).ListAudit(request, metadata=access.metadata(), timeout=10)
