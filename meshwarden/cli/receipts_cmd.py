"""`meshwarden receipts verify`: proves that no receipt the registry stores was altered or
removed. The registry recomputes every receipt's hash and link, checks each chain's seqs and
its head (registry.receipt_verification); this prints the verdict per chain, naming the
sidecar and the seq of each problem.

Exit codes: 0 every chain intact, 4 (TAMPERED) some chain is not, 2 bad flags or trust
settings, 3 registry unreachable, 1 any other failure (a refused operator token included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any, Final

import grpc

from meshwarden.cli import exit_codes, registry_access
from meshwarden.registry_client import registry_channel
from meshwarden.v1 import receipts_pb2, receipts_pb2_grpc

COMMAND: Final = "meshwarden receipts verify"


def add_to(commands: Any) -> None:
    receipts = commands.add_parser("receipts", help="tamper-evident receipts of every call")
    actions = receipts.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify",
        help="prove that no stored receipt was altered or removed (operator token)",
        description="Checks every receipt chain the registry stores: each hash, each link, no gap, "
        f"and each chain's head. Exits 0 when all are intact and {exit_codes.TAMPERED} when one is not.",
    )
    verify.add_argument("--sidecar", default="", metavar="INSTANCE_ID", help="only this sidecar's chain")
    verify.add_argument("--output", choices=["table", "json"], default="table", help="default table")
    verify.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="default 60")
    registry_access.add_registry_flags(verify)
    verify.set_defaults(run=_verify)


def _verify(args: argparse.Namespace) -> int:
    try:
        access = registry_access.resolve(args, os.environ)
        reply = asyncio.run(_ask(access, args.sidecar, args.timeout))
    except registry_access.AccessError as exc:
        print(f"{COMMAND}: {exc}", file=sys.stderr)
        return exc.exit_code
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error(COMMAND, err, args.registry or "the registry")
    if args.sidecar and not reply.chains:
        print(f"{COMMAND}: the registry holds no receipt chain of sidecar {args.sidecar!r}", file=sys.stderr)
        return exit_codes.FAILED
    print(render_json(reply) if args.output == "json" else render_table(reply))
    return exit_codes.OK if reply.intact else exit_codes.TAMPERED


async def _ask(
    access: registry_access.RegistryAccess, sidecar: str, timeout: float
) -> receipts_pb2.VerifyReceiptsResponse:
    async with registry_channel(access.address, access.trust) as channel:
        reply: receipts_pb2.VerifyReceiptsResponse = await receipts_pb2_grpc.ReceiptsStub(channel).VerifyReceipts(
            receipts_pb2.VerifyReceiptsRequest(sidecar_instance_id=sidecar), timeout=timeout, metadata=access.metadata()
        )
        return reply


def render_json(reply: receipts_pb2.VerifyReceiptsResponse) -> str:
    chains = [
        {"sidecar_instance_id": c.sidecar_instance_id, "receipts": c.receipts, "intact": c.intact, "problem": c.problem}
        for c in reply.chains
    ]
    return json.dumps({"intact": reply.intact, "chains": chains}, indent=2)


def render_table(reply: receipts_pb2.VerifyReceiptsResponse) -> str:
    if not reply.chains:
        return "no receipts stored yet"
    width = max(len("SIDECAR"), *(len(c.sidecar_instance_id) for c in reply.chains))
    lines = [f"{'SIDECAR':<{width}}  {'RECEIPTS':>8}  VERDICT"]
    for c in reply.chains:
        verdict = "intact" if c.intact else f"TAMPERED: {c.problem}"
        lines.append(f"{c.sidecar_instance_id:<{width}}  {c.receipts:>8}  {verdict}")
    total = sum(c.receipts for c in reply.chains)
    broken = sum(1 for c in reply.chains if not c.intact)
    if broken:
        lines.append(f"{broken} of {len(reply.chains)} chain(s) were altered: see the seqs named above")
    else:
        lines.append(f"all {len(reply.chains)} chain(s) intact, {total} receipt(s)")
    return "\n".join(lines)
