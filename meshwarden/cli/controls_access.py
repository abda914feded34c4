"""How `meshwarden kill`, `isolate`, `audit` and `budget` reach the registry's operator
services: one place for resolving the registry and the operator token, opening the TLS
channel, and turning a refusal into the exit code the command returns."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from meshwarden.cli import registry_access
from meshwarden.registry_client import registry_channel
from meshwarden.v1 import controls_pb2_grpc

Metadata = tuple[tuple[str, str], ...]
Stub = TypeVar("Stub")
Action = Callable[[controls_pb2_grpc.ControlsStub, argparse.Namespace, Metadata], Awaitable[int]]


def call(command: str, args: argparse.Namespace, action: Action) -> int:
    """Runs `action` against the registry's Controls service; its result is the exit code."""
    return call_service(command, args, controls_pb2_grpc.ControlsStub, action)


def call_service(
    command: str,
    args: argparse.Namespace,
    stub: Callable[[grpc.aio.Channel], Stub],
    action: Callable[[Stub, argparse.Namespace, Metadata], Awaitable[int]],
) -> int:
    """Runs `action` against the registry service `stub` makes; its result is the exit code."""
    try:
        access = registry_access.resolve(args, os.environ)
        return asyncio.run(_with_stub(access, args, stub, action))
    except registry_access.AccessError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error(command, err, args.registry or "the registry")


async def _with_stub(
    access: registry_access.RegistryAccess,
    args: argparse.Namespace,
    stub: Callable[[grpc.aio.Channel], Stub],
    action: Callable[[Stub, argparse.Namespace, Metadata], Awaitable[int]],
) -> int:
    async with registry_channel(access.address, access.trust) as channel:
        return await action(stub(channel), args, access.metadata())
