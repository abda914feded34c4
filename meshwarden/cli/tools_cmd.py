"""`meshwarden tools ledger`: the MCP tool calls agents made through their sidecars, newest
first, filtered by agent, tool, server, session, policy decision and time (operator token).
`meshwarden tools hash`: the input-schema hashes a bundle's mcp_servers.toml declares, read
from a running MCP server (a URL) or one started for the purpose (a command).

Tables for people, `--output json` for scripts. Exit codes: 0 answered (even with no rows),
2 usage, others as `sessions list` (registry unreachable, refused).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import grpc
from google.protobuf import json_format

from meshwarden.cli import exit_codes, registry_access, session_render
from meshwarden.cli.time_window import parse_time, timestamp
from meshwarden.registry_client import registry_channel
from meshwarden.v1 import receipts_pb2, tools_pb2, tools_pb2_grpc


def add_to(commands: Any) -> None:
    tools = commands.add_parser("tools", help="MCP tools: the tool-call ledger, input-schema hashes")
    actions = tools.add_subparsers(dest="tools_action", metavar="ACTION", required=True)
    ledger = actions.add_parser(
        "ledger",
        help="the MCP tool calls agents made, newest first",
        description="Receipts of MCP tool calls (kind tool): who called which SERVER.TOOL, the policy "
        "decision, the result, latency, risk and the arguments' hash. Default window: the last 24 hours.",
    )
    ledger.add_argument("--agent", default="", help="the calling agent")
    ledger.add_argument("--tool", default="", metavar="SERVER.TOOL", help="one tool, as server.tool")
    ledger.add_argument("--server", default="", metavar="SERVER", help="every tool of one MCP server")
    ledger.add_argument("--session", default="", metavar="ID", help="the calls of one session")
    ledger.add_argument("--decision", choices=["allow", "deny"], default=None, help="the policy decision")
    ledger.add_argument("--since", default="", metavar="AGE|TIME", help="e.g. 1h, 30m, 2026-11-21T08:00Z")
    ledger.add_argument("--until", default="", metavar="AGE|TIME", help="end of the window (default now)")
    ledger.add_argument("--limit", type=int, default=100, help="at most this many rows (1-1000, default 100)")
    ledger.add_argument("--cursor", default="", metavar="CURSOR", help="the older calls: the cursor a page printed")
    ledger.add_argument("--output", choices=["table", "json"], default="table", help="default table")
    ledger.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="default 10")
    registry_access.add_registry_flags(ledger)
    ledger.set_defaults(run=_ledger)
    hashes = actions.add_parser(
        "hash",
        help="print the input-schema hashes of an MCP server's tools, for mcp_servers.toml",
        description="Connects to the MCP server with the official client and prints each tool's "
        "input_schema_sha256 (SHA-256 of the schema's canonical JSON). Give --url for streamable HTTP, "
        "or the command after -- for stdio.",
    )
    hashes.add_argument("--url", default="", help="the server's streamable HTTP endpoint")
    hashes.add_argument("--header", action="append", default=[], metavar="NAME:VALUE", help="sent with each request")
    hashes.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...] for a stdio server")
    hashes.add_argument("--output", choices=["table", "json"], default="table", help="default table")
    hashes.set_defaults(run=_hash)


def ledger_request(args: argparse.Namespace, now: float) -> tools_pb2.ListToolCallsRequest:
    if not 1 <= args.limit <= 1000:
        raise ValueError(f"--limit must be from 1 to 1000, got {args.limit}")
    request = tools_pb2.ListToolCallsRequest(
        agent=args.agent,
        tool=args.tool,
        server=args.server,
        session_id=args.session,
        decision=args.decision or "",
        limit=args.limit,
        cursor=getattr(args, "cursor", ""),
    )
    for name in ("since", "until"):
        text = getattr(args, name)
        if text:
            try:
                getattr(request, name).CopyFrom(timestamp(parse_time(text, now=now)))
            except ValueError as exc:
                raise ValueError(f"--{name}: {exc}") from exc
    return request


def _ledger(args: argparse.Namespace) -> int:
    command = "meshwarden tools ledger"
    try:
        request = ledger_request(args, time.time())
        access = registry_access.resolve(args, os.environ)
    except ValueError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    except registry_access.AccessError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        reply = asyncio.run(_fetch(access, request, args.timeout))
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error(command, err, access.address)
    if reply.next_cursor:  # stderr, so the table and the JSON stay what they were
        print(f"more (older): --cursor {reply.next_cursor}", file=sys.stderr)
    if args.output == "json":
        print(json.dumps({"calls": [call_json(r) for r in reply.receipts], "truncated": reply.truncated}, indent=2))
        return exit_codes.OK
    if not reply.receipts:
        print("(no tool calls match)", file=sys.stderr)
        return exit_codes.OK
    print(ledger_table(reply.receipts))
    if reply.truncated and not reply.next_cursor:
        print(
            f"(more calls match; showing the newest {len(reply.receipts)}: narrow it or raise --limit)", file=sys.stderr
        )
    return exit_codes.OK


async def _fetch(
    access: registry_access.RegistryAccess, request: tools_pb2.ListToolCallsRequest, timeout_s: float
) -> tools_pb2.ListToolCallsResponse:
    async with registry_channel(access.address, access.trust) as channel:
        reply: tools_pb2.ListToolCallsResponse = await tools_pb2_grpc.ToolsStub(channel).ListToolCalls(
            request, timeout=timeout_s, metadata=access.metadata()
        )
        return reply


def ledger_table(receipts: Any) -> str:
    rows = [
        (
            "STARTED",
            "AGENT",
            "TOOL",
            "RISK",
            "DECISION",
            "RESULT",
            "LATENCY",
            "SESSION",
            "TASK",
            "APPROVAL",
            "ARGS",
            "ERROR",
        )
    ]
    for r in receipts:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.started_at.seconds))
        rows.append(
            (
                started,
                r.caller_agent,
                r.capability,
                r.tool_risk or "-",
                r.policy_decision or "-",
                r.tool_result_class or "-",
                f"{r.latency_us / 1000:.1f} ms",
                r.session_id or "-",
                r.task_id or "-",
                f"{r.approval_id} {r.approval_decision}" if r.approval_id else "-",
                r.arguments_sha256.removeprefix("sha256:")[:12],
                (r.error_kind + ": " + r.error_message[:60]) if r.error_kind else "",
            )
        )
    return session_render.table(rows)


def call_json(receipt: receipts_pb2.Receipt) -> dict[str, object]:
    data: dict[str, object] = json_format.MessageToDict(receipt, preserving_proto_field_name=True)
    if receipt.arguments_json:  # as JSON, not base64
        data["arguments_json"] = json.loads(receipt.arguments_json)
    return data


def _hash(args: argparse.Namespace) -> int:
    command = [c for c in args.command if c != "--"]
    if bool(args.url) == bool(command):
        print("meshwarden tools hash: give --url URL or -- COMMAND [ARGS...]", file=sys.stderr)
        return exit_codes.USAGE
    headers = {}
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep:
            print(f"meshwarden tools hash: --header {name!r} must be NAME:VALUE", file=sys.stderr)
            return exit_codes.USAGE
        headers[name.strip()] = value.strip()
    try:
        found = asyncio.run(_tool_hashes(args.url, command, headers))
    except Exception as exc:  # noqa: BLE001 - the command's edge: any failure to reach the server is said plainly
        print(f"meshwarden tools hash: could not list the server's tools: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exit_codes.UNREACHABLE
    if args.output == "json":
        print(json.dumps({name: digest for name, digest in found}, indent=2))
    else:
        print(session_render.table([("TOOL", "INPUT_SCHEMA_SHA256"), *found]))
    return exit_codes.OK


async def _tool_hashes(url: str, command: list[str], headers: dict[str, str]) -> list[tuple[str, str]]:
    from mcp import Client, StdioServerParameters  # the sidecar extra; only this subcommand needs it
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    from meshwarden.policy_bundle.mcp_servers import schema_sha256

    server: Any
    if url:
        server = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    else:
        server = StdioServerParameters(command=command[0], args=command[1:])
    async with Client(server) as client:
        tools = (await client.list_tools()).tools
    return sorted((t.name, schema_sha256(t.input_schema)) for t in tools)
