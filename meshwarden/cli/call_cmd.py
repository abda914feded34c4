"""`meshwarden call`: call any capability from the shell, through a sidecar."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from meshwarden.cli import exit_codes
from meshwarden.client import SidecarUnreachable, SyncClient
from meshwarden.errors import MeshError


def add_to(commands: Any) -> None:
    call = commands.add_parser(
        "call",
        help="call a capability through a sidecar and print the result JSON",
        description="Prints the result JSON on stdout. On failure prints the gRPC status and "
        "message on stderr and exits 1 (3 when the sidecar is unreachable, 2 on bad input).",
    )
    call.add_argument(
        "--sidecar",
        default=os.environ.get("MESHWARDEN_SIDECAR", "127.0.0.1:7410"),
        metavar="HOST:PORT",
        help="local API of the sidecar to call through (env MESHWARDEN_SIDECAR; default 127.0.0.1:7410)",
    )
    call.add_argument(
        "--token-file",
        metavar="FILE",
        help="the sidecar's API token, when it requires one (else env MESHWARDEN_SIDECAR_TOKEN[_FILE])",
    )
    call.add_argument("capability", metavar="CAPABILITY")
    call.add_argument("payload", metavar="JSON", help="the arguments as JSON text ('-' reads stdin)")
    call.add_argument("--version", dest="version_range", metavar="RANGE", help="semver range, npm syntax: ^2.3, ~1.4.0")
    call.add_argument("--timeout", type=float, metavar="SECONDS", help="deadline for the whole call")
    call.add_argument("--schema-hash", metavar="sha256:...", help="pin the schema the call was written against")
    call.add_argument("--session", metavar="ID", help="session id to carry with the call")
    call.add_argument("--workflow", metavar="ID", help="workflow id to carry with the call")
    call.add_argument(
        "--cost-estimate-micro-usd", type=int, metavar="N", help="declared cost estimate, millionths of a dollar"
    )
    call.add_argument("--output", choices=["json", "full"], default="json", help="full: result plus who answered")
    call.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.payload == "-" else args.payload
    try:
        json.loads(text)
    except ValueError as exc:
        print(f"meshwarden call: JSON argument is not valid JSON: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    token = Path(args.token_file).read_text().strip() if args.token_file else None
    with SyncClient(args.sidecar, api_token=token) as client:
        try:
            result = client.invoke(
                args.capability,
                text.encode(),
                version=args.version_range,
                timeout=args.timeout,
                schema_hash=args.schema_hash,
                session_id=args.session,
                workflow_id=args.workflow,
                cost_estimate_micro_usd=args.cost_estimate_micro_usd,
            )
        except MeshError as err:
            print(f"{err.status_code().name}: {err.message}", file=sys.stderr)
            return exit_codes.UNREACHABLE if isinstance(err, SidecarUnreachable) else exit_codes.FAILED
    if args.output == "full":
        print(
            json.dumps(
                {
                    "result": result.value,
                    "agent": result.agent,
                    "version": result.version,
                    "instance_id": result.instance_id,
                    "call_id": result.call_id,
                }
            )
        )
    else:
        print(result.raw.decode())
    return exit_codes.OK
