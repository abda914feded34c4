"""One question to the registry's Receipts service as an operator (sessions, timelines, costs):
the operator token and trust from meshwarden.cli.registry_access, errors said on stderr."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import grpc

from meshwarden.cli import exit_codes, registry_access
from meshwarden.registry_client import registry_channel
from meshwarden.v1 import receipts_pb2_grpc


def ask_receipts(command: str, args: argparse.Namespace, rpc: str, request: Any) -> tuple[int, Any]:
    """(exit code, reply): the reply of `rpc` on the registry's Receipts service, or None with
    the exit code after saying on stderr what went wrong."""
    try:
        access = registry_access.resolve(args, os.environ)
    except registry_access.AccessError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exc.exit_code, None
    try:
        return exit_codes.OK, asyncio.run(_fetch(access, rpc, request, args.timeout))
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error(command, err, access.address), None


async def _fetch(access: registry_access.RegistryAccess, rpc: str, request: Any, timeout_s: float) -> Any:
    async with registry_channel(access.address, access.trust) as channel:
        method = getattr(receipts_pb2_grpc.ReceiptsStub(channel), rpc)
        return await method(request, timeout=timeout_s, metadata=access.metadata())
