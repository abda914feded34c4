"""`meshwarden agents list`: what runs in the mesh, as the registry sees it.

A table for people; `--output json` for scripts (a JSON list of instances, stable keys).
Exit codes: 0 listed, 2 bad flags or filters, 3 registry unreachable, 1 any other failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import grpc

from meshwarden.cli import exit_codes
from meshwarden.registry_client import DEFAULT_REGISTRY_ADDRESS, registry_channel, registry_stub
from meshwarden.v1 import catalog_pb2, registry_pb2

REGISTRY_ENV: Final = "MESHWARDEN_REGISTRY"
TABLE_COLUMNS: Final = ("AGENT", "VERSION", "INSTANCE", "PEER", "CAPABILITIES", "LEASE-EXPIRES-IN")
_UNREACHABLE_CODES: Final = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def add_to(commands: Any) -> None:
    agents = commands.add_parser("agents", help="see the agents in the mesh")
    actions = agents.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        help="list registered agent instances",
        description="Lists the agent instances registered with the registry. Exits 3 when the "
        "registry cannot be reached.",
    )
    listing.add_argument(
        "--registry",
        metavar="HOST:PORT",
        help=f"registry address (env {REGISTRY_ENV}; default {DEFAULT_REGISTRY_ADDRESS})",
    )
    listing.add_argument("--output", choices=["table", "json"], default="table", help="default table")
    listing.add_argument("--agent", default="", metavar="NAME", help="only instances of this agent")
    listing.add_argument("--capability", default="", metavar="NAME", help="only instances serving this capability")
    listing.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="default 5")
    listing.set_defaults(run=_list)


def registry_address(flag: str | None, environ: Mapping[str, str]) -> str:
    """--registry, else $MESHWARDEN_REGISTRY, else the default local registry."""
    return flag or environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY_ADDRESS


def _list(args: argparse.Namespace) -> int:

    address = registry_address(args.registry, os.environ)
    try:
        reply = asyncio.run(_fetch(address, args.agent, args.capability, args.timeout))
    except grpc.aio.AioRpcError as err:
        return _report(err, address)
    instances = list(reply.instances)
    if args.output == "json":
        print(json.dumps([instance_json(i) for i in instances], indent=2))
    else:
        print(render_table(instances, now=time.time()))
        if not instances:
            print("(no instances match)", file=sys.stderr)
    return exit_codes.OK


async def _fetch(address: str, agent: str, capability: str, timeout_s: float) -> registry_pb2.ListInstancesResponse:
    async with registry_channel(address) as channel:
        request = registry_pb2.ListInstancesRequest(agent=agent, capability=capability)
        reply: registry_pb2.ListInstancesResponse = await registry_stub(channel).ListInstances(
            request, timeout=timeout_s
        )
        return reply


def _report(err: grpc.aio.AioRpcError, address: str) -> int:
    code = err.code()
    if code in _UNREACHABLE_CODES:
        print(
            f"meshwarden agents list: cannot reach the registry at {address} ({code.name}: {err.details()}); "
            f"is it running? Point to it with --registry or {REGISTRY_ENV}",
            file=sys.stderr,
        )
        return exit_codes.UNREACHABLE
    print(f"meshwarden agents list: {code.name}: {err.details()}", file=sys.stderr)
    return exit_codes.USAGE if code is grpc.StatusCode.INVALID_ARGUMENT else exit_codes.FAILED


def instance_json(instance: catalog_pb2.Instance) -> dict[str, object]:
    """The JSON object `--output json` prints for one instance (keys are a stable interface)."""
    return {
        "agent": instance.agent,
        "version": instance.version,
        "instance_id": instance.instance_id,
        "peer_address": instance.peer_address,
        "spiffe_id": instance.spiffe_id,
        "capabilities": [
            {"name": c.name, "schema_hash": c.schema_hash, "description": c.description}
            for c in instance.capabilities
        ],
        "registered_at": instance.registered_at.ToJsonString(),
        "lease_expires_at": instance.lease_expires_at.ToJsonString(),
    }


def render_table(instances: Sequence[catalog_pb2.Instance], *, now: float) -> str:
    rows = [TABLE_COLUMNS] + [
        (
            i.agent,
            i.version,
            i.instance_id,
            i.peer_address,
            ",".join(c.name for c in i.capabilities) or "-",
            _expires_in(i.lease_expires_at.ToNanoseconds() / 1e9 - now),
        )
        for i in instances
    ]
    widths = [max(len(row[col]) for row in rows) for col in range(len(TABLE_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _expires_in(seconds: float) -> str:
    return "expired" if seconds <= 0 else f"{seconds:.1f}s"
