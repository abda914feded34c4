"""`meshwarden identity token create`: a one-time join token for one agent's sidecar.

Prints the token alone on stdout (`TOKEN=$(meshwarden identity token create --agent billing)`),
or with `--output json` an object with `token`, `agent`, `spiffe_id` and `expires_at`. The
token is a secret: whoever holds it can enrol once as that agent, until it expires. It carries
the registry's CA fingerprint, so the sidecar can check it reached the right registry.
Exit codes: 0 created, 2 bad flags or trust settings, 3 registry unreachable, 1 refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from typing import Any, Final

import grpc

from meshwarden.cli import exit_codes, registry_access
from meshwarden.registry_client import registry_channel
from meshwarden.v1 import identity_pb2, identity_pb2_grpc

COMMAND: Final = "meshwarden identity token create"
DEFAULT_TTL: Final = "1h"
_DURATION: Final = re.compile(r"(\d+)([smhd]?)")
_UNIT_S: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def add_to(commands: Any) -> None:
    identity = commands.add_parser("identity", help="manage identities in the mesh (join tokens)")
    areas = identity.add_subparsers(dest="area", metavar="AREA", required=True)
    token = areas.add_parser("token", help="one-time join tokens for sidecars")
    actions = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="make a one-time join token for an agent",
        description="Asks the registry for a join token with which exactly one sidecar can enrol as "
        "--agent, once, before --ttl runs out. Needs the registry's operator token.",
    )
    create.add_argument("--agent", required=True, metavar="NAME", help="the agent the token lets a sidecar become")
    create.add_argument(
        "--ttl",
        default=DEFAULT_TTL,
        type=duration_s,
        metavar="DURATION",
        help=f"how long the token may wait to be used: 90s, 30m, 1h, 7d (default {DEFAULT_TTL}, at most 7d)",
    )
    registry_access.add_registry_flags(create)
    create.add_argument("--output", choices=["text", "json"], default="text", help="text: the token only")
    create.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="default 5")
    create.set_defaults(run=_create)


def duration_s(text: str) -> int:
    """ "90s", "30m", "1h", "7d" or plain seconds, as whole seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"must be a duration such as 90s, 30m, 1h or 7d, got {text!r}")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def _create(args: argparse.Namespace) -> int:
    try:
        access = registry_access.resolve(args, os.environ)
    except registry_access.AccessError as exc:
        print(f"{COMMAND}: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        token = asyncio.run(_request(access, args.agent, args.ttl, args.timeout))
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error(COMMAND, err, access.address)
    if args.output == "json":
        print(json.dumps(token_json(token)))
    else:
        print(token.token)
        print(
            f"join token for {token.spiffe_id}, single use, valid until {token.expires_at.ToJsonString()}",
            file=sys.stderr,
        )
    return exit_codes.OK


def token_json(token: identity_pb2.JoinToken) -> dict[str, str]:
    """The JSON object `--output json` prints (keys are a stable interface)."""
    return {
        "token": token.token,
        "agent": token.agent,
        "spiffe_id": token.spiffe_id,
        "expires_at": token.expires_at.ToJsonString(),
    }


async def _request(
    access: registry_access.RegistryAccess, agent: str, ttl_s: int, timeout_s: float
) -> identity_pb2.JoinToken:
    async with registry_channel(access.address, access.trust) as channel:
        reply: identity_pb2.JoinToken = await identity_pb2_grpc.IdentityStub(channel).CreateJoinToken(
            identity_pb2.CreateJoinTokenRequest(agent=agent, ttl_s=ttl_s),
            timeout=timeout_s,
            metadata=access.metadata(),
        )
        return reply
