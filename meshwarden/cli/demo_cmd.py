"""`meshwarden demo`: run the support-desk scenario on a local mesh of real processes."""

from __future__ import annotations

import argparse
from typing import Any


def add_to(commands: Any) -> None:
    demo = commands.add_parser("demo", help="run a multi-agent scenario on a local mesh and explain it")
    demo.add_argument("--keep-logs", action="store_true", help="keep the work directory with every process's log")
    demo.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    # The demo's children run both servers: without their extras, say so before starting any.
    import meshwarden.registry.app  # noqa: F401
    import meshwarden.sidecar.app  # noqa: F401
    from meshwarden.demo import scenario

    return scenario.main(keep_logs=args.keep_logs)
