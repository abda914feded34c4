"""One question to the registry's Receipts service (sessions, timelines, costs) or its
SessionInsights service (suspects, changes) as an operator: the operator token and trust from
meshwarden.cli.registry_access, errors said on stderr."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any

import grpc

from meshwarden.cli import exit_codes, registry_access
from meshwarden.registry_client import registry_channel
from meshwarden.v1 import receipts_pb2_grpc, session_insights_pb2_grpc

Stub = Callable[[grpc.aio.Channel], Any]


def ask_receipts(command: str, args: argparse.Namespace, rpc: str, request: Any) -> tuple[int, Any]:
    """(exit code, reply): the reply of `rpc` on the registry's Receipts service, or None with
    the exit code after saying on stderr what went wrong."""
    return ask(command, args, receipts_pb2_grpc.ReceiptsStub, rpc, request)


def ask_insights(command: str, args: argparse.Namespace, rpc: str, request: Any) -> tuple[int, Any]:
    """As ask_receipts, on the SessionInsights service."""
    return ask(command, args, session_insights_pb2_grpc.SessionInsightsStub, rpc, request)


def ask(command: str, args: argparse.Namespace, stub: Stub, rpc: str, request: Any) -> tuple[int, Any]:
    try:
        access = registry_access.resolve(args, os.environ)
    except registry_access.AccessError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exc.exit_code, None
    try:
        return exit_codes.OK, asyncio.run(_fetch(access, stub, rpc, request, args.timeout))
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error(command, err, access.address), None


async def _fetch(access: registry_access.RegistryAccess, stub: Stub, rpc: str, request: Any, timeout_s: float) -> Any:
    async with registry_channel(access.address, access.trust) as channel:
        method = getattr(stub(channel), rpc)
        return await method(request, timeout=timeout_s, metadata=access.metadata())
