"""`meshwarden sidecars list`: every sidecar the registry knows, like `consul members`: those
whose agent serves capabilities (in the catalog, with version, peer address and health) and
pure callers (known by their bundle reports), with the bundle revision each enforces. By agent,
then instance id; `--limit N` prints a page and `more: --cursor CURSOR` on stderr when another
follows (the cursor is the registry's keyset of the last row, as `agents list` pages).

Exit codes: 0 listed; 1 the registry refused; 2 bad flags; 3 the registry could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from meshwarden.cli import exit_codes, registry_access

if TYPE_CHECKING:
    from meshwarden.cli.mesh_inventory import MeshView
    from meshwarden.v1 import registry_pb2

HELP = "every sidecar the registry knows, pure callers included"


@dataclass(frozen=True, slots=True)
class Member:
    instance_id: str
    agent: str
    role: str  # "serves" (in the catalog) or "caller" (reports, serves nothing)
    version: str
    peer_address: str
    capabilities: list[str]
    bundle_revision: int
    refused: str  # "rev N: why", "" when none
    live: bool
    # Who let it in (agents list's ENROLLED-BY); a pure caller is not in the catalog, and the
    # registry keeps no enrolment for it: "unrecorded".
    enrolled_by: str = "unrecorded"


def add_to(commands: Any) -> None:
    sidecars = commands.add_parser("sidecars", help=HELP)
    actions = sidecars.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help=HELP, description=HELP + " (like `consul members`).")
    listing.add_argument("--all", action="store_true", help="also sidecars that stopped reporting (live no)")
    listing.add_argument("--output", choices=["table", "json"], default="table", help="table (default) or json")
    listing.add_argument("--limit", type=int, default=0, metavar="N", help="a page of N sidecars (default 0: all)")
    listing.add_argument("--cursor", default="", metavar="CURSOR", help="the next page: the cursor a page printed")
    registry_access.add_registry_flags(listing)
    listing.set_defaults(run=_list)


def _list(args: argparse.Namespace) -> int:
    import grpc

    from meshwarden.cli import mesh_inventory

    if args.limit < 0:
        print("meshwarden sidecars list: --limit must be 0 (all) or more", file=sys.stderr)
        return exit_codes.USAGE
    try:
        access = registry_access.resolve(args, os.environ)
        view = asyncio.run(mesh_inventory.fetch(access, limit=args.limit, cursor=args.cursor, live_only=not args.all))
    except registry_access.AccessError as exc:
        print(f"meshwarden sidecars list: {exc}", file=sys.stderr)
        return exc.exit_code
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error("meshwarden sidecars list", err, access.address)
    found, next_cursor = page_of([m for m in members(view) if m.live or args.all], view, args.limit)
    if next_cursor:  # stderr, so the table and the JSON stay what they were
        print(f"more: --cursor {next_cursor}", file=sys.stderr)
    if args.output == "json":
        print(json.dumps([asdict(m) for m in found], indent=2))
        return exit_codes.OK
    headings = (
        "INSTANCE",
        "AGENT",
        "ROLE",
        "VERSION",
        "PEER",
        "CAPABILITIES",
        "BUNDLE",
        "LIVE",
        "ENROLLED-BY",
        "REFUSED",
    )
    rows = [headings] + [
        (
            m.instance_id,
            m.agent,
            m.role,
            m.version or "-",
            m.peer_address or "-",
            ",".join(m.capabilities) or "-",
            str(m.bundle_revision) if m.bundle_revision else "none",
            "yes" if m.live else "no",
            m.enrolled_by,
            m.refused or "-",
        )
        for m in found
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print("\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows))
    if not found:
        print("(no sidecar reports to the registry)", file=sys.stderr)
    return exit_codes.OK


def members(view: MeshView) -> list[Member]:
    """The catalog's instances joined with every bundle report, by instance id."""
    from meshwarden.cli.agents_list import enrolled_by  # grpc and the stubs: only once listed

    reports = {s.instance_id: s for s in view.bundles.sidecars}
    found: dict[str, Member] = {}
    for i in view.catalog.instances:
        report = reports.get(i.instance_id)
        found[i.instance_id] = Member(
            i.instance_id,
            i.agent,
            "serves",
            i.version,
            i.peer_address,
            [c.name for c in i.capabilities],
            report.active_revision if report else 0,
            _refused(report),
            True,
            enrolled_by(i),
        )
    for s in view.bundles.sidecars:
        if s.instance_id not in found:
            found[s.instance_id] = Member(
                s.instance_id, s.agent, "caller", "", "", [], s.active_revision, _refused(s), s.live
            )
    return sorted(found.values(), key=lambda m: (m.agent, m.instance_id))


def page_of(found: list[Member], view: MeshView, limit: int) -> tuple[list[Member], str]:
    """The first `limit` sidecars of the two pages merged (0: all) and the cursor after them.

    The catalog's page and the reports' page each hold their first `limit` rows after the same
    cursor, by the same key: any sidecar among the first `limit` of the union is in one of them,
    and its report (same key) in the reports' page. More follow when the union is longer than
    `limit` or either page said so."""
    from meshwarden.registry import keyset  # the registry's cursor: JSON of the last row's key

    if not limit:
        return found, ""
    page = found[:limit]
    more = len(found) > limit or bool(view.catalog.next_cursor or view.bundles.next_cursor)
    return page, keyset.encode(page[-1].agent, page[-1].instance_id) if more and page else ""


def _refused(report: registry_pb2.BundleStatus | None) -> str:
    return f"rev {report.refused_revision}: {report.refusal}" if report is not None and report.refused_revision else ""
