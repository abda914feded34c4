"""`meshwarden kill`: engage a kill switch at one scope and wait until every live sidecar
enforces it; `kill list` (with each switch's time to effect: the live sidecars enforcing it,
of those expected, and how soon after it was stored) and `kill lift ID`. Operator token; the
registry records who, when and why (`meshwarden audit list`)."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

from meshwarden.cli import controls_access, exit_codes, list_paging, registry_access
from meshwarden.cli.controls_output import enforcement_line, parse_duration, when
from meshwarden.cli.session_render import table
from meshwarden.control_scopes import KIND_BY_NAME, KIND_NAMES, ScopeError, check_reason, check_scope, describe
from meshwarden.v1 import controls_pb2, controls_pb2_grpc

_VALUED = [name for name in KIND_BY_NAME if name != "all"]
_METAVARS = {"version": "NAME@VERSION", "tool": "SERVER.TOOL", "mcp-server": "SERVER"}


def _dest(name: str) -> str:
    return name.replace("-", "_")  # --mcp-server lands in args.mcp_server


def add_to(commands: Any) -> None:
    kill = commands.add_parser(
        "kill",
        help="stop calls at one scope, mesh-wide, in milliseconds (kill list, kill lift ID)",
        description="Engage a kill switch: every sidecar refuses new matching calls on both the caller's "
        "and the callee's side and cancels those in flight. Answers once every live sidecar enforces it. "
        "Also: `meshwarden kill list`, `meshwarden kill lift ID`.",
    )
    kill.add_argument("action", nargs="?", choices=["list", "lift"], help="list the switches in force, or lift one")
    kill.add_argument("id", nargs="?", metavar="ID", help="the switch to lift (kill lift ID)")
    scope = kill.add_mutually_exclusive_group()
    for name in _VALUED:
        scope.add_argument(
            f"--{name}",
            dest=_dest(name),
            metavar=_METAVARS.get(name, name.upper()),
            help=f"stop the calls of this {name.replace('-', ' ')}",
        )
    scope.add_argument("--all", action="store_true", help="every call in the mesh")
    kill.add_argument("--reason", default="", help="why (required to kill; shown to callers and in the audit log)")
    kill.add_argument("--ttl", metavar="DURATION", help="lift it by itself after this long: 30s, 10m, 2h, 1d")
    kill.add_argument(
        "--wait-s", type=float, default=5.0, metavar="SECONDS", help="how long to wait for sidecars (default 5)"
    )
    kill.add_argument("--output", choices=["table", "json"], default="table", help="table (default) or json")
    list_paging.add_flags(kill, "switches (kill list)", "by engaged time, then id")
    registry_access.add_registry_flags(kill)
    kill.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    if args.action == "list":
        if not list_paging.check_limit("meshwarden kill list", args.limit):
            return exit_codes.USAGE
        return controls_access.call("meshwarden kill list", args, _list)
    if args.action == "lift":
        if not args.id:
            print("meshwarden kill lift: give the switch id (see meshwarden kill list)", file=sys.stderr)
            return exit_codes.USAGE
        return controls_access.call("meshwarden kill lift", args, _lift)
    if args.id:
        print(f"meshwarden kill: unexpected {args.id!r}; scopes are flags, e.g. --agent billing", file=sys.stderr)
        return exit_codes.USAGE
    try:  # checked before anything is sent (or the registry's CA is learned)
        args.request = kill_request(args)
    except ScopeError as exc:
        print(f"meshwarden kill: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    return controls_access.call("meshwarden kill", args, _kill)


def kill_request(args: argparse.Namespace) -> controls_pb2.KillRequest:
    kind, value = _scope(args)
    request = controls_pb2.KillRequest(scope_kind=kind, scope_value=value, reason=check_reason(args.reason))  # type: ignore[arg-type]
    if args.ttl:
        request.ttl.FromTimedelta(datetime.timedelta(seconds=parse_duration(args.ttl, "--ttl")))
    request.wait.FromTimedelta(datetime.timedelta(seconds=args.wait_s))
    return request


def _scope(args: argparse.Namespace) -> tuple[int, str]:
    if args.all:
        return KIND_BY_NAME["all"], ""
    given = [(name, getattr(args, _dest(name))) for name in _VALUED if getattr(args, _dest(name)) is not None]
    if not given:
        raise ScopeError(f"give one scope: --{', --'.join(KIND_BY_NAME)}")
    name, value = given[0]
    kind = KIND_BY_NAME[name]
    return kind, check_scope(kind, value)


async def _kill(stub: controls_pb2_grpc.ControlsStub, args: argparse.Namespace, metadata: Any) -> int:
    reply: controls_pb2.KillResponse = await stub.Kill(args.request, metadata=metadata, timeout=args.wait_s + 10)
    if args.output == "json":
        print(json.dumps({"kill_switch": _switch_json(reply.kill_switch), **_enforcement_json(reply.enforcement)}))
        return exit_codes.OK
    ks = reply.kill_switch
    print(f"kill switch {ks.id} engaged ({describe(ks.scope_kind, ks.scope_value)}): {ks.reason}")
    print(enforcement_line(reply.enforcement))
    return exit_codes.OK


async def _lift(stub: controls_pb2_grpc.ControlsStub, args: argparse.Namespace, metadata: Any) -> int:
    request = controls_pb2.LiftKillRequest(id=args.id, reason=args.reason)
    request.wait.FromTimedelta(datetime.timedelta(seconds=args.wait_s))
    reply: controls_pb2.LiftKillResponse = await stub.LiftKill(request, metadata=metadata, timeout=args.wait_s + 10)
    if args.output == "json":
        print(json.dumps({"kill_switch": _switch_json(reply.kill_switch), **_enforcement_json(reply.enforcement)}))
        return exit_codes.OK
    ks = reply.kill_switch
    print(f"kill switch {ks.id} lifted ({describe(ks.scope_kind, ks.scope_value)})")
    print(enforcement_line(reply.enforcement))
    return exit_codes.OK


async def _list(stub: controls_pb2_grpc.ControlsStub, args: argparse.Namespace, metadata: Any) -> int:
    reply: controls_pb2.ListKillsResponse = await stub.ListKills(
        controls_pb2.ListKillsRequest(limit=args.limit, cursor=args.cursor), metadata=metadata, timeout=10
    )
    list_paging.print_more(reply.next_cursor)
    effects = reply.time_to_effect
    if args.output == "json":
        listed = [
            {**_switch_json(k), "time_to_effect": _effect_json(effects[k.id]) if k.id in effects else None}
            for k in reply.kill_switches
        ]
        print(json.dumps(listed, indent=2))
        return exit_codes.OK
    if not reply.kill_switches:
        print("no kill switches in force")
        return exit_codes.OK
    rows = [("ID", "SCOPE", "SINCE", "UNTIL", "BY", "TIME-TO-EFFECT", "REASON")]
    for k in reply.kill_switches:
        until = when(k.expires_at) if k.HasField("expires_at") else "lifted"
        took = _effect_text(effects[k.id]) if k.id in effects else "not measured"
        rows.append(
            (k.id, describe(k.scope_kind, k.scope_value), when(k.created_at), until, k.created_by, took, k.reason)
        )
    print(table(rows))
    return exit_codes.OK


def _switch_json(k: controls_pb2.KillSwitch) -> dict[str, object]:
    return {
        "id": k.id,
        "scope": KIND_NAMES.get(k.scope_kind, ""),
        "value": k.scope_value,
        "reason": k.reason,
        "created_by": k.created_by,
        "created_at": when(k.created_at),
        "expires_at": when(k.expires_at) if k.HasField("expires_at") else None,
    }


def _effect_json(e: controls_pb2.Enforcement) -> dict[str, object]:
    return {"enforced": e.enforced, "expected": e.expected, "took_ms": round(e.took.ToMicroseconds() / 1000, 1)}


def _effect_text(e: controls_pb2.Enforcement) -> str:
    """ "6/6 in 14.2ms": live sidecars enforcing it of those expected, and how soon after it was stored."""
    return f"{e.enforced}/{e.expected} in {e.took.ToMicroseconds() / 1000:.1f}ms"


def _enforcement_json(e: controls_pb2.Enforcement) -> dict[str, object]:
    return {
        "revision": e.revision,
        "enforced": e.enforced,
        "expected": e.expected,
        "took_ms": round(e.took.ToMicroseconds() / 1000, 1),
        "not_acknowledged": list(e.not_acknowledged),
    }
