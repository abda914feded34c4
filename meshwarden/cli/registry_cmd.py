"""`meshwarden registry serve`: run the registry (catalog, leases, watch stream);
`meshwarden registry migrate`: bring its store's schema up to date (before replicas serve)."""

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
    migrate = actions.add_parser(
        "migrate",
        help="apply the registry's schema to an empty or older store",
        description="Runs the schema steps the store has not run yet, in one transaction (replicas starting "
        "together are safe: the steps run once). A PostgreSQL store must be migrated before replicas serve "
        "on it; a SQLite store in --data-dir is also migrated by `registry serve` itself. Refuses a store "
        "written by a newer meshwarden.",
    )
    add_options(migrate, [o for o in OPTIONS if o.key in ("store", "data_dir")], ENV_PREFIX)
    migrate.add_argument("--output", choices=("table", "json"), default="table", help="how to print the result")
    migrate.set_defaults(run=_migrate)


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


def _migrate(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from meshwarden.config_layers import resolve
    from meshwarden.registry.config import ENV_PREFIX, OPTIONS, with_store_alias
    from meshwarden.registry.errors import StoreError
    from meshwarden.registry.store_migration import migrate_store

    values = resolve([o for o in OPTIONS if o.key in ("store", "data_dir")], args, ENV_PREFIX, with_store_alias(None))
    try:
        result = asyncio.run(migrate_store(values["store"], values["data_dir"]))
    except StoreError as exc:
        print(f"meshwarden registry migrate: {exc}", file=sys.stderr)
        return exit_codes.FAILED
    if args.output == "json":
        print(json.dumps({"store": result.location, "from_version": result.before, "to_version": result.after}))
    elif result.before == result.after:
        print(f"{result.location}: schema version {result.after}, up to date")
    else:
        print(f"{result.location}: schema version {result.before} -> {result.after}")
    return exit_codes.OK
