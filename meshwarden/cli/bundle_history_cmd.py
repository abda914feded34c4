"""`meshwarden bundle history`, `bundle pull REVISION` and `bundle rollback REVISION`: the
revisions the registry stores (BundleHistory service, operator token).

A rollback never makes a revision number go down: sidecars refuse a revision that is not newer
than the one they run (a replayed old bundle must not undo a fix). So it takes the files of the
old revision, gives them the next revision number, builds and checks them again, signs them
with the key given and pushes the result: a new revision with the old content.

Exit codes: 0 done; 1 the registry refused (or a sidecar did not take the rollback within
--wait-s); 2 bad flags or input; 3 the registry could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

import grpc

from meshwarden.cli import exit_codes, list_paging, registry_access
from meshwarden.registry_client import registry_channel
from meshwarden.secure_files import write_atomically
from meshwarden.v1 import bundle_history_pb2, bundle_history_pb2_grpc, registry_pb2

TIMEOUT_S = 10.0
MAX_HISTORY_PAGE = 1000  # the registry's (registry/api/bundle_history.py MAX_LIMIT)


def add_actions(actions: Any) -> None:
    history = actions.add_parser("history", help="the revisions the registry stores, newest first")
    history.add_argument(
        "--limit",
        type=int,
        default=20,
        metavar="N",
        help="a page of N revisions, newest first (default 20, at most 1000)",
    )
    history.add_argument(
        "--cursor", default="", metavar="CURSOR", help="the next (older) page: the cursor a page printed"
    )
    history.add_argument("--output", choices=["table", "json"], default="table", help="table (default) or json")
    registry_access.add_registry_flags(history)
    history.set_defaults(run=_history)

    pull = actions.add_parser("pull", help="fetch the artifact of a revision the registry serves (0: the latest)")
    pull.add_argument("revision", type=int, metavar="REVISION")
    pull.add_argument("-o", "--output-file", type=Path, metavar="FILE", help="default: <name>.rev<N>.bundle.json here")
    registry_access.add_registry_flags(pull)
    pull.set_defaults(run=_pull)

    rollback = actions.add_parser(
        "rollback",
        help="publish the content of an older revision as a new, signed revision",
        description="Takes REVISION's files from the registry, sets the next revision number, checks and "
        "builds them, signs with --key and pushes: revision numbers never go down.",
    )
    rollback.add_argument("revision", type=int, metavar="REVISION", help="the revision whose content to restore")
    rollback.add_argument("--key", required=True, type=Path, metavar="KEYFILE", help="the private signing key (.key)")
    rollback.add_argument("--key-id", required=True, metavar="ID", help="the key's id, as sidecars know it")
    rollback.add_argument(
        "--wait-s", type=float, default=0.0, metavar="SECONDS", help="wait this long for every live sidecar to take it"
    )
    registry_access.add_registry_flags(rollback)
    rollback.set_defaults(run=_rollback)


async def fetch_revision(access: registry_access.RegistryAccess, revision: int) -> registry_pb2.PolicyBundle:
    async with registry_channel(access.address, access.trust) as channel:
        reply: registry_pb2.PolicyBundle = await bundle_history_pb2_grpc.BundleHistoryStub(channel).GetBundle(
            bundle_history_pb2.GetBundleRequest(revision=revision), timeout=TIMEOUT_S, metadata=access.metadata()
        )
        return reply


async def _list(
    access: registry_access.RegistryAccess, limit: int, cursor: str
) -> bundle_history_pb2.ListBundlesResponse:
    async with registry_channel(access.address, access.trust) as channel:
        reply: bundle_history_pb2.ListBundlesResponse = await bundle_history_pb2_grpc.BundleHistoryStub(
            channel
        ).ListBundles(
            bundle_history_pb2.ListBundlesRequest(limit=limit, cursor=cursor),
            timeout=TIMEOUT_S,
            metadata=access.metadata(),
        )
        return reply


def _history(args: argparse.Namespace) -> int:
    command = "meshwarden bundle history"
    if not 1 <= args.limit <= MAX_HISTORY_PAGE:
        return _fail(command, f"--limit must be from 1 to {MAX_HISTORY_PAGE}, got {args.limit}", exit_codes.USAGE)
    try:
        access = registry_access.resolve(args, os.environ)
        listing = asyncio.run(_list(access, args.limit, args.cursor))
    except registry_access.AccessError as exc:
        return _fail(command, str(exc), exc.exit_code)
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error(command, err, access.address)
    list_paging.print_more(listing.next_cursor)
    rows = [
        {
            "revision": b.revision,
            "name": b.name,
            "digest": b.digest,
            "pushed_at": b.pushed_at.ToJsonString(),
        }
        for b in listing.bundles
    ]
    if args.output == "json":
        print(json.dumps(rows, indent=2))
        return exit_codes.OK
    table = [("REVISION", "NAME", "PUSHED", "DIGEST")] + [
        (str(b.revision), b.name, _when(b.pushed_at.seconds), b.digest) for b in listing.bundles
    ]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    print("\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table))
    if not listing.bundles:
        print("(no bundle was ever pushed)", file=sys.stderr)
    return exit_codes.OK


def _pull(args: argparse.Namespace) -> int:
    command = "meshwarden bundle pull"
    try:
        access = registry_access.resolve(args, os.environ)
        bundle = asyncio.run(fetch_revision(access, args.revision))
    except registry_access.AccessError as exc:
        return _fail(command, str(exc), exc.exit_code)
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error(command, err, access.address)
    target = args.output_file or Path(f"{bundle.name}.rev{bundle.revision}.bundle.json")
    try:
        write_atomically(target, bundle.artifact, mode=0o644)
    except OSError as exc:
        return _fail(command, f"cannot write {target}: {exc.strerror}", exit_codes.USAGE)
    print(target)
    print(f"pulled {bundle.name} revision {bundle.revision} ({bundle.digest})", file=sys.stderr)
    return exit_codes.OK


def _rollback(args: argparse.Namespace) -> int:
    from meshwarden.policy_bundle import artifact as fmt
    from meshwarden.policy_bundle.build import build_files
    from meshwarden.policy_bundle.errors import BundleError, BundleInvalid
    from meshwarden.policy_bundle.keys import load_private_key
    from meshwarden.policy_bundle.manifest import MANIFEST_FILE, with_revision
    from meshwarden.policy_bundle.sign import sign

    command = "meshwarden bundle rollback"
    if args.revision <= 0:
        return _fail(
            command, "REVISION must be a revision the registry stores (meshwarden bundle history)", exit_codes.USAGE
        )
    try:
        key = load_private_key(args.key)
        access = registry_access.resolve(args, os.environ)
        old, latest = asyncio.run(_old_and_latest(access, args.revision))
    except BundleError as exc:
        return _fail(command, str(exc), exit_codes.USAGE)
    except registry_access.AccessError as exc:
        return _fail(command, str(exc), exc.exit_code)
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error(command, err, access.address)
    if old.revision == latest.revision:
        return _fail(command, f"revision {old.revision} is already the latest; nothing to roll back", exit_codes.USAGE)
    files = dict(fmt.decode(old.artifact).files)
    new_revision = latest.revision + 1
    try:
        files[MANIFEST_FILE] = with_revision(files[MANIFEST_FILE], new_revision)
        built = build_files(files, f"revision {old.revision} from the registry")
        signed = sign(built.to_bytes(), key, args.key_id)
    except BundleInvalid as exc:
        for problem in exc.problems:
            print(f"{problem.file}:{problem.line}: {problem.message}", file=sys.stderr)
        return _fail(command, f"revision {old.revision} no longer builds (above)", exit_codes.USAGE)
    except (BundleError, ValueError, KeyError) as exc:
        return _fail(command, f"cannot rebuild revision {old.revision}: {exc}", exit_codes.USAGE)
    from meshwarden.cli.bundle_rollout_cmd import push_and_wait

    try:
        reply, listing = asyncio.run(push_and_wait(access, signed, args.wait_s))
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error(command, err, access.address)
    print(
        f"rolled back to the content of revision {old.revision}: pushed {reply.name} revision {reply.revision} "
        f"({reply.digest}) to {reply.watchers} watching sidecar(s)"
    )
    if args.wait_s > 0:
        live = [s for s in listing.sidecars if s.live]
        current = [s for s in live if s.active_revision == reply.revision]
        print(f"enforced by {len(current)}/{len(live)} live sidecar(s)")
        if len(current) < len(live):
            return exit_codes.FAILED
    return exit_codes.OK


async def _old_and_latest(
    access: registry_access.RegistryAccess, revision: int
) -> tuple[registry_pb2.PolicyBundle, registry_pb2.PolicyBundle]:
    return await fetch_revision(access, revision), await fetch_revision(access, 0)


def _when(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _fail(command: str, message: str, code: int) -> int:
    print(f"{command}: {message}", file=sys.stderr)
    return code
