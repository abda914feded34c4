"""`meshwarden sidecar run`: the sidecar beside one agent; `sidecar status` and `sidecar config`
show a running one (sidecar_inspect.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from meshwarden.cli import exit_codes, sidecar_inspect
from meshwarden.config_layers import add_options


def add_to(commands: Any) -> None:
    sidecar = commands.add_parser("sidecar", help="run the sidecar beside an agent; inspect one (status, config)")
    actions = sidecar.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = actions.add_parser(
        "run",
        help="run a sidecar until SIGTERM or SIGINT",
        description="Runs the sidecar beside one agent. Traces go to an OpenTelemetry collector when "
        "OTEL_EXPORTER_OTLP_ENDPOINT is set (and the other standard OTEL_* variables: protocol, sampler, "
        "service name); metrics and health are on --admin-listen.",
    )
    from meshwarden.sidecar.config import ENV_PREFIX, OPTIONS

    add_options(run, OPTIONS, ENV_PREFIX)
    run.set_defaults(run=_run)
    sidecar_inspect.add_actions(actions)


def _run(args: argparse.Namespace) -> int:
    from meshwarden.sidecar import app, config

    cfg = config.load(args)
    try:
        asyncio.run(app.serve(cfg))
    except app.StartError as exc:
        print(f"meshwarden sidecar: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    except app.BackgroundFailure as exc:
        print(f"meshwarden sidecar: {exc}", file=sys.stderr)
        return exit_codes.FAILED
    return exit_codes.OK
