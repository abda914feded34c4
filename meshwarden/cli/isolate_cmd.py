"""`meshwarden isolate NAME@VERSION --reason ...`: take one version out of routing mesh-wide
(an emergency rollback); `isolate lift NAME@VERSION`, `isolate list`. Operator token."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

from meshwarden.cli import controls_access, exit_codes, list_paging, registry_access
from meshwarden.cli.controls_output import enforcement_line, when
from meshwarden.cli.session_render import table
from meshwarden.control_scopes import ScopeError, check_reason, parse_version_target
from meshwarden.v1 import controls_pb2, controls_pb2_grpc


def add_to(commands: Any) -> None:
    isolate = commands.add_parser(
        "isolate",
        help="take NAME@VERSION out of routing mesh-wide (isolate list, isolate lift NAME@VERSION)",
        description="Every sidecar stops routing to the version, as if it were absent: sessions pinned to it "
        "move to another version in their range, or fail saying it is isolated. `meshwarden isolate lift "
        "NAME@VERSION` puts it back; `meshwarden isolate list` shows what is isolated.",
    )
    isolate.add_argument("target", metavar="NAME@VERSION | list | lift")
    isolate.add_argument("lift_target", nargs="?", metavar="NAME@VERSION", help="with lift: the version to put back")
    isolate.add_argument("--reason", default="", help="why (required to isolate; kept in the audit log)")
    isolate.add_argument(
        "--wait-s", type=float, default=5.0, metavar="SECONDS", help="how long to wait for sidecars (default 5)"
    )
    isolate.add_argument("--output", choices=["table", "json"], default="table", help="table (default) or json")
    list_paging.add_flags(isolate, "isolations (isolate list)", "by isolated time, then agent, then version")
    registry_access.add_registry_flags(isolate)
    isolate.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    command = "meshwarden isolate"
    try:
        if args.target == "list":
            if not list_paging.check_limit(f"{command} list", args.limit):
                return exit_codes.USAGE
            return controls_access.call(f"{command} list", args, _list())
        if args.target == "lift":
            target = parse_version_target(args.lift_target or "", "isolate lift")
            request = controls_pb2.LiftIsolationRequest(target=str(target), reason=args.reason)
            request.wait.FromTimedelta(datetime.timedelta(seconds=args.wait_s))
            return controls_access.call(f"{command} lift", args, _lift(request))
        if args.lift_target:
            raise ScopeError(f"unexpected {args.lift_target!r}: isolate one NAME@VERSION at a time")
        target = parse_version_target(args.target, "isolate")
        isolate_request = controls_pb2.IsolateRequest(target=str(target), reason=check_reason(args.reason))
        isolate_request.wait.FromTimedelta(datetime.timedelta(seconds=args.wait_s))
        return controls_access.call(command, args, _isolate(isolate_request))
    except ScopeError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exit_codes.USAGE


def _isolate(request: controls_pb2.IsolateRequest) -> controls_access.Action:
    async def run(stub: controls_pb2_grpc.ControlsStub, args: argparse.Namespace, metadata: Any) -> int:
        reply: controls_pb2.IsolateResponse = await stub.Isolate(request, metadata=metadata, timeout=args.wait_s + 10)
        i = reply.isolation
        if args.output == "json":
            print(json.dumps({"isolated": f"{i.agent}@{i.version}", "enforced": reply.enforcement.enforced}))
            return exit_codes.OK
        print(f"{i.agent}@{i.version} isolated: out of routing mesh-wide ({i.reason})")
        print(enforcement_line(reply.enforcement))
        return exit_codes.OK

    return run


def _lift(request: controls_pb2.LiftIsolationRequest) -> controls_access.Action:
    async def run(stub: controls_pb2_grpc.ControlsStub, args: argparse.Namespace, metadata: Any) -> int:
        reply: controls_pb2.LiftIsolationResponse = await stub.LiftIsolation(
            request, metadata=metadata, timeout=args.wait_s + 10
        )
        i = reply.isolation
        if args.output == "json":
            print(json.dumps({"lifted": f"{i.agent}@{i.version}", "enforced": reply.enforcement.enforced}))
            return exit_codes.OK
        print(f"{i.agent}@{i.version} back in routing")
        print(enforcement_line(reply.enforcement))
        return exit_codes.OK

    return run


def _list() -> controls_access.Action:
    async def run(stub: controls_pb2_grpc.ControlsStub, args: argparse.Namespace, metadata: Any) -> int:
        reply: controls_pb2.ListIsolationsResponse = await stub.ListIsolations(
            controls_pb2.ListIsolationsRequest(limit=args.limit, cursor=args.cursor), metadata=metadata, timeout=10
        )
        list_paging.print_more(reply.next_cursor)
        if args.output == "json":
            print(
                json.dumps(
                    [
                        {
                            "target": f"{i.agent}@{i.version}",
                            "reason": i.reason,
                            "created_by": i.created_by,
                            "created_at": when(i.created_at),
                        }
                        for i in reply.isolations
                    ],
                    indent=2,
                )
            )
            return exit_codes.OK
        if not reply.isolations:
            print("no versions isolated")
            return exit_codes.OK
        rows = [("VERSION", "SINCE", "BY", "REASON")]
        rows += [(f"{i.agent}@{i.version}", when(i.created_at), i.created_by, i.reason) for i in reply.isolations]
        print(table(rows))
        return exit_codes.OK

    return run
