"""`meshwarden registry serve`: run the registry (catalog, leases, watch stream)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from meshwarden.cli import exit_codes
from meshwarden.config_layers import add_options


def add_to(commands: Any) -> None:
    from meshwarden.registry.config import ENV_PREFIX, OPTIONS

    registry = commands.add_parser("registry", help="run the registry")
    actions = registry.add_subparsers(dest="action", metavar="ACTION", required=True)
    serve = actions.add_parser(
        "serve",
        help="serve the registry until SIGTERM or SIGINT",
        description="Serves meshwarden.v1.Registry and meshwarden.v1.Identity (the embedded SPIFFE issuer) "
        "over TLS on --listen (no client certificate: enrolment, operators, health, reflection) and over mTLS "
        "on --mtls-listen (sidecars with SVIDs), keeps its state and CA in --data-dir, and prints one JSON "
        "ready line on stdout once serving.",
    )
    add_options(serve, OPTIONS, ENV_PREFIX)
    serve.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    from meshwarden.registry import app, config
    from meshwarden.registry.errors import CaError, StoreError

    cfg = config.load(args)
    try:
        app.run(cfg)
    except (StoreError, CaError, app.StartError) as exc:
        print(f"meshwarden registry: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    return exit_codes.OK
