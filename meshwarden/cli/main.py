"""`meshwarden`: subcommands for servers (registry serve, sidecar run), operators (agents
list, identity token create, call) and newcomers (demo). Each subcommand lives in its own module and registers itself
with `add_to(subparsers)`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from meshwarden import logs
from meshwarden.cli import (
    agents_cmd,
    audit_cmd,
    budget_cmd,
    bundle_cmd,
    call_cmd,
    costs_cmd,
    demo_cmd,
    exit_codes,
    identity_cmd,
    isolate_cmd,
    kill_cmd,
    receipts_cmd,
    registry_cmd,
    route_cmd,
    sessions_cmd,
    sidecar_cmd,
)
from meshwarden.config_layers import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshwarden",
        description="meshwarden: a service mesh for AI agents.",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"], help="json: one object per line")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (
        registry_cmd,
        sidecar_cmd,
        agents_cmd,
        identity_cmd,
        bundle_cmd,
        route_cmd,
        receipts_cmd,
        call_cmd,
        demo_cmd,
    ):
        module.add_to(commands)
    for module in (sessions_cmd, costs_cmd):  # what sessions did and cost (issue 6)
        module.add_to(commands)
    for module in (kill_cmd, isolate_cmd, audit_cmd, budget_cmd):  # operator controls
        module.add_to(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"meshwarden: configuration error: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
