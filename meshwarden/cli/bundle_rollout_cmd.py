"""`meshwarden bundle push` and `meshwarden bundle status`: roll a signed bundle out through
the registry, and see which revision every sidecar enforces and why any refused one."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from meshwarden.cli import exit_codes, registry_access
from meshwarden.cli.session_render import table
from meshwarden.registry_client import registry_channel, registry_stub
from meshwarden.v1 import registry_pb2


def add_actions(actions: Any) -> None:
    push = actions.add_parser(
        "push",
        help="publish a signed bundle through the registry to every sidecar",
        description="The registry refuses an unsigned bundle or a revision not newer than the last "
        "(exit 1); sidecars verify the signature themselves and report back (see `bundle status`).",
    )
    push.add_argument("file", type=Path, metavar="FILE", help="the signed artifact (`bundle sign`)")
    push.add_argument(
        "--wait-s",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for every live sidecar to report the new revision",
    )
    registry_access.add_registry_flags(push)
    push.set_defaults(run=_push)

    status = actions.add_parser("status", help="which revision each sidecar enforces, and why any refused one")
    registry_access.add_registry_flags(status)
    status.add_argument("--output", choices=["table", "json"], default="table", help="table (default) or json")
    status.set_defaults(run=_status)


def _push(args: argparse.Namespace) -> int:
    try:
        raw = args.file.read_bytes()
    except OSError as exc:
        print(f"meshwarden bundle push: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return exit_codes.USAGE
    try:
        access = registry_access.resolve(args, os.environ)
        reply, listing = asyncio.run(push_and_wait(access, raw, args.wait_s))
    except registry_access.AccessError as exc:
        print(f"meshwarden bundle push: {exc}", file=sys.stderr)
        return exc.exit_code
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error("meshwarden bundle push", err, args.registry or "the registry")
    print(f"pushed {reply.name} revision {reply.revision} ({reply.digest}) to {reply.watchers} watching sidecar(s)")
    if args.wait_s > 0:
        live = [s for s in listing.sidecars if s.live]
        current = [s for s in live if s.active_revision == reply.revision]
        print(f"enforced by {len(current)}/{len(live)} live sidecar(s)")
        refused = [s for s in live if s.refused_revision == reply.revision]
        for s in refused:
            print(f"  {s.instance_id} ({s.agent}) refused it: {s.refusal}", file=sys.stderr)
        if len(current) < len(live):
            return exit_codes.FAILED
    return exit_codes.OK


async def push_and_wait(
    access: registry_access.RegistryAccess, raw: bytes, wait_s: float
) -> tuple[registry_pb2.PushBundleResponse, registry_pb2.ListBundleStatusResponse]:
    async with registry_channel(access.address, access.trust) as channel:
        stub = registry_stub(channel)
        reply: registry_pb2.PushBundleResponse = await stub.PushBundle(
            registry_pb2.PushBundleRequest(artifact=raw), timeout=10, metadata=access.metadata()
        )
        deadline = time.monotonic() + wait_s
        while True:
            listing: registry_pb2.ListBundleStatusResponse = await stub.ListBundleStatus(
                registry_pb2.ListBundleStatusRequest(), timeout=10, metadata=access.metadata()
            )
            live = [s for s in listing.sidecars if s.live]
            settled = all(s.active_revision == reply.revision or s.refused_revision == reply.revision for s in live)
            if settled or time.monotonic() >= deadline:
                return reply, listing
            await asyncio.sleep(0.05)


def _status(args: argparse.Namespace) -> int:
    try:
        access = registry_access.resolve(args, os.environ)
        listing = asyncio.run(_list(access))
    except registry_access.AccessError as exc:
        print(f"meshwarden bundle status: {exc}", file=sys.stderr)
        return exc.exit_code
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error("meshwarden bundle status", err, access.address)
    if args.output == "json":
        print(json.dumps(status_json(listing), indent=2))
        return exit_codes.OK
    latest = listing.latest
    print(
        f"latest pushed: {latest.name} revision {latest.revision} ({latest.digest})"
        if latest.revision
        else "latest pushed: none"
    )
    rows = [("INSTANCE", "AGENT", "ACTIVE", "LIVE", "REFUSED")]
    for s in listing.sidecars:
        refused = f"rev {s.refused_revision}: {s.refusal}" if s.refused_revision else "-"
        rows.append((s.instance_id, s.agent, str(s.active_revision), "yes" if s.live else "no", refused))
    print(table(rows))
    return exit_codes.OK


async def _list(access: registry_access.RegistryAccess) -> registry_pb2.ListBundleStatusResponse:
    async with registry_channel(access.address, access.trust) as channel:
        reply: registry_pb2.ListBundleStatusResponse = await registry_stub(channel).ListBundleStatus(
            registry_pb2.ListBundleStatusRequest(), timeout=10, metadata=access.metadata()
        )
        return reply


def status_json(listing: registry_pb2.ListBundleStatusResponse) -> dict[str, object]:
    return {
        "latest": {"name": listing.latest.name, "revision": listing.latest.revision, "digest": listing.latest.digest}
        if listing.latest.revision
        else None,
        "sidecars": [
            {
                "instance_id": s.instance_id,
                "agent": s.agent,
                "active_revision": s.active_revision,
                "active_digest": s.active_digest,
                "refused_revision": s.refused_revision,
                "refusal": s.refusal,
                "live": s.live,
                "reported_at": s.reported_at.ToJsonString(),
            }
            for s in listing.sidecars
        ],
    }
