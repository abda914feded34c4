"""`meshwarden registry serve`: run the registry (catalog, leases, watch stream)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from meshwarden.cli import exit_codes
from meshwarden.config_layers import add_options


def add_to(commands: Any) -> None:
    from registry.config import ENV_PREFIX, OPTIONS

    registry = commands.add_parser("registry", help="run the registry")
    actions = registry.add_subparsers(dest="action", metavar="ACTION", required=True)
    serve = actions.add_parser(
        "serve",
        help="serve the registry until SIGTERM or SIGINT",
        description="Serves meshwarden.v1.Registry, grpc.health.v1 and reflection on --listen, "
        "keeps its state in --data-dir, and prints one JSON ready line on stdout once serving.",
    )
    add_options(serve, OPTIONS, ENV_PREFIX)
    serve.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    from registry import app, config
    from registry.errors import StoreError

    cfg = config.load(args)
    try:
        app.run(cfg)
    except (StoreError, app.StartError) as exc:
        print(f"meshwarden registry: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    return exit_codes.OK
