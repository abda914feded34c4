"""`meshwarden approvals`: work the queue of calls that wait for a person's approval.

    approvals list [--all]            pending approvals (every state with --all), newest first
    approvals show ID                 the handoff: who, what, the exact arguments, the risk
                                      factors, and the session so far (from its receipts)
    approvals approve ID --reason …   let that one call (these exact arguments) through, once
    approvals deny ID --reason …      refuse it; the agent is told the reason

Operator token. Exit codes: 0 done, 1 refused by the registry, 2 bad input, 3 registry
unreachable, 5 no such approval, 6 the approval is no longer pending (decided or expired).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import grpc

from meshwarden.cli import exit_codes, registry_access
from meshwarden.cli.controls_output import when
from meshwarden.cli.session_render import table, timeline, timeline_json
from meshwarden.registry_client import registry_channel
from meshwarden.v1 import approvals_pb2, approvals_pb2_grpc, receipts_pb2, receipts_pb2_grpc

_STATE_NAMES = {
    approvals_pb2.PENDING: "pending",
    approvals_pb2.APPROVED: "approved",
    approvals_pb2.DENIED: "denied",
    approvals_pb2.EXPIRED: "expired",
    approvals_pb2.USED: "used",
}


def add_to(commands: Any) -> None:
    approvals = commands.add_parser(
        "approvals",
        help="calls waiting for a person's approval: list, show ID, approve ID, deny ID",
        description="Calls that a permit policy with @approval(...) holds until an operator decides. "
        "A decision covers the exact arguments shown, lets one call through, and expires.",
    )
    actions = approvals.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="pending approvals, newest first (operator token)")
    listing.add_argument("--all", action="store_true", help="every state, not only pending")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    listing.add_argument("--cursor", default="", metavar="CURSOR", help="the next page: the cursor a page printed")
    show = actions.add_parser("show", help="who, what, the exact arguments, the risk factors, the session so far")
    show.add_argument("id", metavar="ID")
    decide = []
    for name, what in (("approve", "let this one call through"), ("deny", "refuse it, telling the agent why")):
        parser = actions.add_parser(name, help=f"{what} (operator token; audited)")
        parser.add_argument("id", metavar="ID")
        parser.add_argument("--reason", required=True, help="why (the audit log keeps it; the agent sees it)")
        parser.set_defaults(approve=name == "approve")
        decide.append(parser)
    for parser in (listing, show, *decide):
        parser.add_argument("--output", choices=["table", "json"], default="table", help="table (default) or json")
        registry_access.add_registry_flags(parser)
    listing.set_defaults(run=lambda args: _call("meshwarden approvals list", args, _list))
    show.set_defaults(run=lambda args: _call("meshwarden approvals show", args, _show))
    for parser in decide:
        parser.set_defaults(run=lambda args: _call(f"meshwarden approvals {args.action}", args, _decide))


async def _list(channel: grpc.aio.Channel, args: argparse.Namespace, metadata: Any) -> int:
    reply = await approvals_pb2_grpc.ApprovalsStub(channel).ListApprovals(
        approvals_pb2.ListApprovalsRequest(all=args.all, limit=max(args.limit, 1), cursor=args.cursor),
        metadata=metadata,
        timeout=10,
    )
    if reply.next_cursor:  # stderr, so the table and the JSON stay what they were
        print(f"more: --cursor {reply.next_cursor}", file=sys.stderr)
    if args.output == "json":
        print(json.dumps([approval_json(a) for a in reply.approvals], indent=2))
        return exit_codes.OK
    if not reply.approvals:
        print("no approvals" if args.all else "no pending approvals")
        return exit_codes.OK
    rows = [("ID", "STATE", "AGENT", "CALLS", "REQUESTED", "EXPIRES", "RISK")]
    for a in reply.approvals:
        rows.append(
            (
                a.id,
                _state(a),
                a.agent,
                a.capability,
                when(a.requested_at),
                when(a.expires_at),
                "; ".join(a.risk_factors),
            )
        )
    print(table(rows))
    return exit_codes.OK


async def _show(channel: grpc.aio.Channel, args: argparse.Namespace, metadata: Any) -> int:
    approval = await approvals_pb2_grpc.ApprovalsStub(channel).GetApproval(
        approvals_pb2.GetApprovalRequest(id=args.id), metadata=metadata, timeout=10
    )
    session: receipts_pb2.GetSessionResponse | None = None
    if approval.session_id:
        try:
            session = await receipts_pb2_grpc.ReceiptsStub(channel).GetSession(
                receipts_pb2.GetSessionRequest(session_id=approval.session_id), metadata=metadata, timeout=10
            )
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:  # no receipt shipped yet: the handoff says so
                raise
    if args.output == "json":
        shown = approval_json(approval)
        shown["session"] = timeline_json(session) if session is not None else None
        print(json.dumps(shown, indent=2))
        return exit_codes.OK
    print(handoff(approval, session))
    return exit_codes.OK


async def _decide(channel: grpc.aio.Channel, args: argparse.Namespace, metadata: Any) -> int:
    if not args.reason.strip():
        print(f"meshwarden approvals {args.action}: --reason must say why", file=sys.stderr)
        return exit_codes.USAGE
    approval = await approvals_pb2_grpc.ApprovalsStub(channel).DecideApproval(
        approvals_pb2.DecideApprovalRequest(id=args.id, approve=args.approve, reason=args.reason),
        metadata=metadata,
        timeout=10,
    )
    if args.output == "json":
        print(json.dumps(approval_json(approval), indent=2))
    else:
        print(f"{approval.id} {_state(approval)} by {approval.decided_by}: {approval.reason}")
        print(f"  {approval.agent} -> {approval.capability}, arguments sha256 {approval.arguments_sha256}")
        if approval.state == approvals_pb2.APPROVED:
            print(f"  one call with these exact arguments may go until {when(approval.expires_at)}")
    return exit_codes.OK


def handoff(approval: approvals_pb2.Approval, session: receipts_pb2.GetSessionResponse | None) -> str:
    """What a person needs to decide in two minutes, in the order they need it."""
    lines = [
        f"approval {approval.id}: {_state(approval)}",
        f"  who:      {approval.agent} ({approval.spiffe_id})",
        f"  what:     {approval.call_kind} call to {approval.capability}",
        f"  why held: {'; '.join(approval.risk_factors) or '-'} (policies {', '.join(approval.policy_ids) or '-'}, "
        f"{approval.bundle or 'no bundle'})",
        f"  asked:    {when(approval.requested_at)}, decide before {when(approval.expires_at)}",
        f"  session:  {approval.session_id or '-'}"
        + (f", workflow {approval.workflow_id}" if approval.workflow_id else ""),
    ]
    if approval.decided_by:
        lines.append(
            f"  decided:  {_state(approval)} by {approval.decided_by} at {when(approval.decided_at)}: {approval.reason}"
        )
    if approval.used_by_call_id:
        lines.append(f"  used by:  call {approval.used_by_call_id} at {when(approval.used_at)}")
    lines += ["", f"arguments (sha256 {approval.arguments_sha256}):"]
    lines.append(
        _pretty(approval.arguments_json)
        if approval.arguments_json
        else "  (not shown: over 64 KiB, or the bundle sets approvers_see_arguments = false)"
    )
    lines.append("")
    if session is None:
        lines.append(
            "session so far: no receipts yet" if approval.session_id else "session so far: the call named no session"
        )
    else:
        lines += ["session so far:", timeline(session)]
    lines += [
        "",
        f"decide: meshwarden approvals approve {approval.id} --reason ...  |  meshwarden approvals deny {approval.id} --reason ...",
    ]
    return "\n".join(lines)


def approval_json(a: approvals_pb2.Approval) -> dict[str, object]:
    arguments: object = None
    if a.arguments_json:
        try:
            arguments = json.loads(a.arguments_json)
        except ValueError:
            arguments = a.arguments_json
    return {
        "id": a.id,
        "state": _state(a),
        "agent": a.agent,
        "spiffe_id": a.spiffe_id,
        "call_kind": a.call_kind,
        "capability": a.capability,
        "arguments_sha256": a.arguments_sha256,
        "arguments": arguments,
        "risk_factors": list(a.risk_factors),
        "policy_ids": list(a.policy_ids),
        "bundle": a.bundle,
        "session_id": a.session_id,
        "workflow_id": a.workflow_id,
        "call_id": a.call_id,
        "requested_at": when(a.requested_at),
        "expires_at": when(a.expires_at),
        "decided_at": when(a.decided_at) if a.HasField("decided_at") else None,
        "decided_by": a.decided_by,
        "reason": a.reason,
        "used_at": when(a.used_at) if a.HasField("used_at") else None,
        "used_by_call_id": a.used_by_call_id,
    }


def _pretty(text: str) -> str:
    try:
        return "\n".join("  " + line for line in json.dumps(json.loads(text), indent=2, sort_keys=True).splitlines())
    except ValueError:
        return "  " + text


def _state(a: approvals_pb2.Approval) -> str:
    return _STATE_NAMES.get(a.state, "unknown")


def _call(command: str, args: argparse.Namespace, action: Any) -> int:
    try:
        access = registry_access.resolve(args, os.environ)
        return int(asyncio.run(_with_channel(access, args, action)))
    except registry_access.AccessError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            print(f"{command}: {err.details()}", file=sys.stderr)
            return exit_codes.NOT_FOUND
        if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
            print(f"{command}: {err.details()}", file=sys.stderr)
            return exit_codes.CONFLICT
        return registry_access.report_rpc_error(command, err, args.registry or "the registry")


async def _with_channel(access: registry_access.RegistryAccess, args: argparse.Namespace, action: Any) -> int:
    async with registry_channel(access.address, access.trust) as channel:
        result: int = await action(channel, args, access.metadata())
        return result
