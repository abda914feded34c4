"""`meshwarden check`: is the mesh healthy? One line per check, like `linkerd check`, a hint
under each that is not OK, `--output json` for scripts.

Exit codes: 0 every check passed (warnings allowed); 1 a check failed; 2 bad flags; 3 the
registry could not be reached (every check that needs it is skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshwarden.addresses import AddressError, parse_host_port
from meshwarden.cli import exit_codes, registry_access

if TYPE_CHECKING:
    from meshwarden.cli.mesh_checks import Check

HELP = "check the mesh: registry, CA, bundles on every sidecar, entities, routes, controls, clocks, data dirs"


def add_to(commands: Any) -> None:
    check = commands.add_parser(
        "check",
        help=HELP,
        description="Checks the registry (reachable, CA validity), the policy bundle (pushed, enforced by every "
        "live sidecar, its entities covering every agent and capability), weighted routes (live versions), kill "
        "switches and isolations in force, clocks (admin ports' Date header, within the SVIDs' 60 s), and the "
        "modes of data directories on this machine. Exit 0 when all pass, 1 when one fails, 3 when the registry "
        "cannot be reached.",
    )
    registry_access.add_registry_flags(check)
    check.add_argument(
        "--admin",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="an admin port (the registry's or a sidecar's) whose clock to compare; repeat for several "
        "(default, with a loopback registry: 127.0.0.1:9900 and 127.0.0.1:9901 when they answer)",
    )
    check.add_argument(
        "--data-dir",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="a registry's or sidecar's data directory to check for private modes; repeat for several "
        "(default: those under ./.meshwarden that exist)",
    )
    check.add_argument("--output", choices=["table", "json"], default="table", help="table (default) or json")
    check.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from meshwarden.cli import check_probes, mesh_checks

    try:
        admins = [str(parse_host_port(a, what="--admin")) for a in args.admin]
    except AddressError as exc:
        print(f"meshwarden check: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    try:
        checks, reached, address = _registry_checks(args)
    except BadInput as exc:
        print(f"meshwarden check: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    if not admins and _loopback(address):
        defaults = [check_probes.clock_reading(a) for a in ("127.0.0.1:9900", "127.0.0.1:9901")]
        checks.append(mesh_checks.clocks([r for r in defaults if r.skew_s is not None] or defaults, explicit=False))
    else:
        checks.append(mesh_checks.clocks([check_probes.clock_reading(a) for a in admins], explicit=bool(admins)))
    dirs = [Path(d) for d in args.data_dir] or check_probes.default_data_dirs()
    missing = [d for d in dirs if not d.is_dir()]
    if missing:
        print(f"meshwarden check: not a directory: {', '.join(map(str, missing))}", file=sys.stderr)
        return exit_codes.USAGE
    exposed = [e for d in dirs for e in check_probes.exposed_paths(d)]
    checks.append(mesh_checks.data_dirs_private([str(d) for d in dirs], exposed, explicit=bool(args.data_dir)))
    if args.output == "json":
        print(json.dumps(mesh_checks.as_json(checks), indent=2))
    else:
        print(mesh_checks.render(checks))
    if not reached:
        return exit_codes.UNREACHABLE
    return exit_codes.OK if mesh_checks.overall(checks) else exit_codes.FAILED


class BadInput(Exception):
    """What was given cannot be used (no operator token, a refused request): exit 2."""


def _registry_checks(args: argparse.Namespace) -> tuple[list[Check], bool, str]:
    """The checks that need the registry, whether it answered, and its address (from a flag,
    the environment or the context); BadInput when what was given cannot be used."""
    import grpc

    from meshwarden.cli import check_probes, mesh_checks

    address = registry_access.registry_address(args.registry, os.environ)
    needs_registry = [
        "registry CA valid",
        "policy bundle pushed",
        "sidecars enforce the latest bundle",
        "bundle entities cover the mesh",
        "routes name live versions",
        "kill switches and isolations",
    ]
    try:
        access = registry_access.resolve(args, os.environ)
        facts = asyncio.run(check_probes.registry_facts(access))
    except registry_access.AccessError as exc:
        if exc.exit_code == exit_codes.USAGE:
            raise BadInput(str(exc)) from exc
        return [mesh_checks.registry_unreachable(address, str(exc))] + _skipped(needs_registry), False, address
    except grpc.aio.AioRpcError as err:
        if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            why = f"{err.code().name}: {err.details()}"
            return [mesh_checks.registry_unreachable(address, why)] + _skipped(needs_registry), False, access.address
        raise BadInput(f"the registry refused: {err.code().name}: {err.details()}") from err
    view = facts.view
    live = sum(1 for s in view.bundles.sidecars if s.live)
    checks = [
        mesh_checks.registry_reachable(access.address, access.trust.trust_domain, len(view.catalog.instances), live),
        mesh_checks.ca_validity(access.trust.bundle_pem, datetime.datetime.now(datetime.UTC)),
        mesh_checks.bundle_pushed(view.bundles),
        mesh_checks.sidecars_enforce_latest(view.bundles),
    ]
    if view.bundles.latest.revision:
        checks.append(mesh_checks.entities_cover(facts.latest_entities, view.inventory()))
    else:
        checks.append(mesh_checks.Check("bundle entities cover the mesh", "skip", "no bundle pushed"))
    checks.append(mesh_checks.routes_name_live_versions(list(facts.routes.routes), view.catalog.instances))
    checks.append(mesh_checks.controls_in_force(list(facts.kills.kill_switches), list(facts.isolations.isolations)))
    return checks, True, access.address


def _skipped(names: list[str]) -> list[Check]:
    from meshwarden.cli.mesh_checks import Check

    return [Check(name, "skip", "the registry did not answer") for name in names]


def _loopback(address: str) -> bool:
    try:
        return parse_host_port(address, what="--registry").is_loopback
    except AddressError:
        return False
