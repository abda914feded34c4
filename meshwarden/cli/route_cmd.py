"""`meshwarden route set|list|clear`: weighted version routes, kept by the registry and pushed
to every sidecar, which then chooses among the versions in a caller's range by weight (and keeps
a session on the version it started with)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import grpc

from meshwarden.cli import exit_codes, list_paging, registry_access, route_targets
from meshwarden.cli.session_render import table
from meshwarden.registry_client import registry_channel, registry_stub
from meshwarden.v1 import registry_pb2


def add_to(commands: Any) -> None:
    route = commands.add_parser(
        "route",
        help="weighted version routes (canaries, gradual rollouts) with session pinning",
        description="Sidecars choose among the versions in a caller's range by weight; a session "
        "stays on the version it started with while that version is live.",
    )
    actions = route.add_subparsers(dest="action", metavar="ACTION", required=True)

    set_ = actions.add_parser("set", help="set a capability's version weights (operator token)")
    set_.add_argument("capability", metavar="CAPABILITY")
    set_.add_argument(
        "--weights",
        required=True,
        metavar="VERSION=WEIGHT,...",
        help="e.g. 2.3.1=90,2.4.0=10; versions at 0 or not listed are not chosen while a weighted one is live",
    )
    set_.add_argument(
        "--force",
        action="store_true",
        help="set it even when no live instance serves the capability or a version named (e.g. before a deploy)",
    )
    registry_access.add_registry_flags(set_)
    set_.set_defaults(run=_set)

    clear = actions.add_parser("clear", help="remove a capability's route (operator token)")
    clear.add_argument("capability", metavar="CAPABILITY")
    registry_access.add_registry_flags(clear)
    clear.set_defaults(run=_clear)

    listing = actions.add_parser("list", help="every route")
    listing.add_argument("--output", choices=["table", "json"], default="table", help="table (default) or json")
    list_paging.add_flags(listing, "routes", "by capability")
    registry_access.add_registry_flags(listing)
    listing.set_defaults(run=_list)


def parse_weights(text: str) -> dict[str, int]:
    """'2.3.1=90,2.4.0=10' -> {'2.3.1': 90, '2.4.0': 10}; ValueError saying what is wrong."""
    weights: dict[str, int] = {}
    for item in text.split(","):
        version, sep, weight = item.strip().partition("=")
        if not sep or not version.strip() or not weight.strip().isdigit():
            raise ValueError(f"{item.strip()!r} is not VERSION=WEIGHT (a whole number), as in 2.3.1=90")
        if version.strip() in weights:
            raise ValueError(f"version {version.strip()} is listed twice")
        weights[version.strip()] = int(weight)
    return weights


def describe(route: registry_pb2.Route) -> str:
    return ",".join(f"{v}={w}" for v, w in sorted(route.weights.items()))


def _set(args: argparse.Namespace) -> int:
    try:
        weights = parse_weights(args.weights)
    except ValueError as exc:
        print(f"meshwarden route set: --weights: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    return _send("meshwarden route set", args, args.capability, weights, checked=not args.force)


def _clear(args: argparse.Namespace) -> int:
    return _send("meshwarden route clear", args, args.capability, {}, checked=False)


def _send(command: str, args: argparse.Namespace, capability: str, weights: dict[str, int], *, checked: bool) -> int:
    try:
        access = registry_access.resolve(args, os.environ)
        reply = asyncio.run(_set_route(access, capability, weights, checked=checked))
    except registry_access.AccessError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except route_targets.UnknownRouteTarget as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error(command, err, args.registry or "the registry")
    if weights:
        print(f"route for {capability} set to {describe(reply.route)}; sent to {reply.watchers} watching sidecar(s)")
    else:
        print(f"route for {capability} cleared; sent to {reply.watchers} watching sidecar(s)")
    return exit_codes.OK


async def _set_route(
    access: registry_access.RegistryAccess, capability: str, weights: dict[str, int], *, checked: bool
) -> registry_pb2.SetRouteResponse:
    async with registry_channel(access.address, access.trust) as channel:
        if checked:
            catalog: registry_pb2.ListInstancesResponse = await registry_stub(channel).ListInstances(
                registry_pb2.ListInstancesRequest(), timeout=10, metadata=access.metadata()
            )
            route_targets.check(capability, weights, catalog.instances)
        reply: registry_pb2.SetRouteResponse = await registry_stub(channel).SetRoute(
            registry_pb2.SetRouteRequest(capability=capability, weights=weights), timeout=10, metadata=access.metadata()
        )
        return reply


def _list(args: argparse.Namespace) -> int:
    if not list_paging.check_limit("meshwarden route list", args.limit):
        return exit_codes.USAGE
    try:
        access = registry_access.resolve(args, os.environ)
        listing = asyncio.run(_list_routes(access, args.limit, args.cursor))
    except registry_access.AccessError as exc:
        print(f"meshwarden route list: {exc}", file=sys.stderr)
        return exc.exit_code
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error("meshwarden route list", err, args.registry or "the registry")
    list_paging.print_more(listing.next_cursor)
    if args.output == "json":
        print(json.dumps([{"capability": r.capability, "weights": dict(r.weights)} for r in listing.routes], indent=2))
        return exit_codes.OK
    if not listing.routes:
        print("no routes")
        return exit_codes.OK
    print(table([("CAPABILITY", "ROUTE"), *((r.capability, describe(r)) for r in listing.routes)]))
    return exit_codes.OK


async def _list_routes(
    access: registry_access.RegistryAccess, limit: int, cursor: str
) -> registry_pb2.ListRoutesResponse:
    async with registry_channel(access.address, access.trust) as channel:
        reply: registry_pb2.ListRoutesResponse = await registry_stub(channel).ListRoutes(
            registry_pb2.ListRoutesRequest(limit=limit, cursor=cursor), timeout=10, metadata=access.metadata()
        )
        return reply
