"""`meshwarden agents list`: what runs in the mesh, as the registry sees it.

A table for people; `--output json` for scripts (a JSON list of instances, stable keys).
Each instance shows the SPIFFE ID of its sidecar, when the SVID it last presented to the
registry expires, and its health as its callers' sidecars report it (HEALTH, WHY: the worst
state a live caller reports, HEALTHY with "no reports" when none does), and who let it in
(ENROLLED-BY, from the SVID it registered with: the operator credential that made the join
token it enrolled with, or open_enrolment, ca_key, spire, unrecorded). A second table has one
row per agent of the page with what it has in progress (SESSIONS-RUNNING, TASKS-RUNNING; in
JSON `agent_activity` on each instance; registry.store.AgentActivityStore defines them). The CLI calls the
registry over TLS with the operator token (meshwarden.cli.registry_access).
Exit codes: 0 listed, 2 bad flags, filters or trust settings, 3 registry unreachable, 1 any
other failure (a refused operator token included).
"""

from __future__ import annotations

import argparse
from typing import Any

from meshwarden.cli import registry_access


def add_to(commands: Any) -> None:
    agents = commands.add_parser("agents", help="see the agents in the mesh")
    actions = agents.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        help="list registered agent instances",
        description="Lists the agent instances registered with the registry. Exits 3 when the "
        "registry cannot be reached.",
    )
    registry_access.add_registry_flags(listing)
    listing.add_argument("--output", choices=["table", "json"], default="table", help="default table")
    listing.add_argument("--agent", default="", metavar="NAME", help="only instances of this agent")
    listing.add_argument("--capability", default="", metavar="NAME", help="only instances serving this capability")
    listing.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="default 5")
    listing.add_argument("--limit", type=int, default=0, metavar="N", help="a page of N instances (default 0: all)")
    listing.add_argument("--cursor", default="", metavar="CURSOR", help="the next page: the cursor a page printed")
    listing.set_defaults(run=_list)


def _list(args: argparse.Namespace) -> int:
    from meshwarden.cli import agents_list  # grpc and the stubs: only when a listing runs

    return agents_list.run(args)
