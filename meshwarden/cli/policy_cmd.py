"""`meshwarden policy explain`: evaluate one call against a bundle, offline, and say which
policies decided and why (like `cedar authorize`). The bundle is a built artifact (signed or
not), a bundle directory (built in memory), or, with neither, a revision the registry stores.

The sidecar's own engine decides (sidecar/policy, the caller's outbound slice), so the answer
is the one a sidecar gives for the same call, arguments, session and time.

Exit codes: 0 allowed; 1 denied; 2 bad input (bundle, arguments, flags); 3 the registry could
not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshwarden.cli import exit_codes, registry_access

if TYPE_CHECKING:
    from meshwarden.policy_bundle.artifact import BundleContents

HELP = "explain a policy decision: evaluate a call against a bundle offline"


def add_to(commands: Any) -> None:
    policy = commands.add_parser("policy", help=HELP)
    actions = policy.add_subparsers(dest="action", metavar="ACTION", required=True)
    explain = actions.add_parser(
        "explain",
        help="may CALLER call this capability, tool or model with these arguments, and which policies decide",
        description="Evaluates one call as the caller's sidecar would (outbound), offline. Exit 0 when "
        "allowed, 1 when denied, 2 on bad input.",
    )
    explain.add_argument(
        "bundle",
        nargs="?",
        type=Path,
        metavar="BUNDLE",
        help="a bundle artifact (.bundle.json) or bundle directory; default: the registry's latest (--revision)",
    )
    explain.add_argument("--caller", required=True, metavar="AGENT", help="the calling agent's name")
    target = explain.add_mutually_exclusive_group(required=True)
    target.add_argument("--capability", metavar="NAME", help="an agent's capability, e.g. billing.refund")
    target.add_argument("--tool", metavar="SERVER.TOOL", help="an MCP tool the bundle's mcp_servers.toml declares")
    target.add_argument("--model", metavar="NAME", help="a model the bundle's models.json declares (CallModel)")
    explain.add_argument(
        "--input-tokens", type=int, default=0, metavar="N", help="with --model: the estimated input tokens (default 0)"
    )
    explain.add_argument(
        "--max-tokens",
        type=int,
        metavar="N",
        help="with --model: the client's output cap (default: the model's default_max_tokens)",
    )
    explain.add_argument("--args", default="{}", metavar="JSON", help="the call's JSON arguments (default {})")
    explain.add_argument("--session-id", default="", metavar="ID", help="the call's session (context.session_id)")
    explain.add_argument("--workflow-id", default="", metavar="ID", help="the call's workflow (context.workflow_id)")
    explain.add_argument("--cost-estimate-micro-usd", type=int, metavar="N", help="the caller's declared estimate")
    explain.add_argument("--at", type=int, metavar="UNIX_S", help="evaluate at this time (default now)")
    explain.add_argument("--revision", type=int, default=0, metavar="N", help="with no BUNDLE: this stored revision")
    explain.add_argument("--output", choices=["table", "json"], default="table", help="table (default) or json")
    registry_access.add_registry_flags(explain)
    explain.set_defaults(run=_explain)


def _explain(args: argparse.Namespace) -> int:
    from meshwarden.policy_bundle.errors import BundleError

    try:
        contents, digest = _bundle(args)
    except BundleError as exc:
        return _fail(str(exc), exit_codes.USAGE)
    except OSError as exc:
        return _fail(f"{exc.filename or args.bundle}: {exc.strerror}", exit_codes.USAGE)
    except registry_access.AccessError as exc:
        return _fail(str(exc), exc.exit_code)
    try:
        json.loads(args.args)
    except ValueError as exc:
        return _fail(f"--args is not JSON: {exc}", exit_codes.USAGE)
    return _decide(args, contents, digest, args.args.encode())  # as sent: the engine maps it, as a sidecar does


def _decide(args: argparse.Namespace, contents: BundleContents, digest: str, args_json: bytes) -> int:
    from meshwarden.identity.spiffe_ids import DEFAULT_TRUST_DOMAIN, agent_id
    from meshwarden.policy_bundle.errors import BundleError
    from meshwarden.policy_bundle.inventory import inventory
    from meshwarden.policy_bundle.verify import VerifiedBundle
    from meshwarden.sidecar.policy import ActivePolicy, ArgumentsNotMappable, Caller, CallFacts, Direction
    from meshwarden.sidecar.policy.model_policy import ModelFacts

    trust_domain = args.trust_domain or os.environ.get(registry_access.TRUST_DOMAIN_ENV) or DEFAULT_TRUST_DOMAIN
    try:
        engine = ActivePolicy(
            VerifiedBundle(contents, digest, key_id=""), local_agent=args.caller, local_capabilities=()
        )
    except BundleError as exc:
        return _fail(str(exc), exit_codes.USAGE)
    caller = Caller(args.caller, agent_id(trust_domain, args.caller))
    facts = CallFacts(
        now_unix_s=args.at if args.at is not None else int(time.time()),
        session_id=args.session_id,
        workflow_id=args.workflow_id,
        cost_estimate_micro_usd=args.cost_estimate_micro_usd,
    )
    try:
        if args.model:
            entry = engine.models.models.get(args.model)
            if entry is None:
                declared = ", ".join(sorted(engine.models.models)) or "none"
                return _fail(f"{engine.label} declares no model {args.model} (declared: {declared})", exit_codes.USAGE)
            max_tokens = args.max_tokens if args.max_tokens is not None else entry.default_max_tokens
            model_facts = ModelFacts(
                session_id=args.session_id,
                workflow_id=args.workflow_id,
                team=engine.team_of(args.caller),
                estimated_input_tokens=args.input_tokens,
                max_output_tokens=max_tokens,
                cost_estimate_micro_usd=args.cost_estimate_micro_usd
                if args.cost_estimate_micro_usd is not None
                else entry.prices.cost_micro_usd(args.input_tokens, max_tokens),
            )
            decision = engine.model_policy.decide(args.caller, args.model, model_facts)
            target, considered = f"model {args.model}", None
        elif args.tool:
            tool = engine.mcp_servers.tool(args.tool)
            if tool is None:
                declared = ", ".join(t.qualified for t in engine.mcp_servers.all_tools()) or "none"
                return _fail(f"{engine.label} declares no tool {args.tool} (declared: {declared})", exit_codes.USAGE)
            decision = engine.decide_tool(caller, tool, args_json, facts)
            target, considered = f"tool {args.tool}", None
        else:
            decision = engine.decide(Direction.OUTBOUND, caller, args.capability, args_json, facts)
            target = args.capability
            considered = engine.slice_size(Direction.OUTBOUND, args.caller, args.capability)
    except ArgumentsNotMappable as exc:
        return _fail(f"the call would be refused as a bad payload: {exc}", exit_codes.USAGE)
    where = {p.policy_id: p for p in inventory(contents).policies}
    deciding = [where[i] for i in decision.policy_ids if i in where]
    if args.output == "json":
        print(
            json.dumps(
                {
                    "allowed": decision.allowed,
                    "caller": args.caller,
                    "target": target,
                    "bundle": engine.label,
                    "digest": digest,
                    "reason": decision.reason,
                    "deciding_policies": [
                        {"id": p.policy_id, "effect": p.effect, "reason": p.reason, "file": p.file, "line": p.line}
                        for p in deciding
                    ],
                    "approval_risks": list(decision.approval_risks),
                    "policies_considered": considered,
                },
                indent=2,
            )
        )
    else:
        verdict = "ALLOW" if decision.allowed else "DENY"
        if decision.allowed and decision.approval_risks:
            verdict = "ALLOW after a person approves"
        print(f"{verdict}: {args.caller} -> {target} under {engine.label}")
        if deciding:
            print("decided by:")
            for p in deciding:
                print(f"  {p.effect:<6}  {p.policy_id}  ({p.file}:{p.line})  {p.reason}".rstrip())
        else:
            print("decided by: no policy (default deny: nothing permits it)")
        print(f"reason: {decision.reason}")
        if considered is not None:
            print(f"policies that could apply to this pair: {considered}")
    return exit_codes.OK if decision.allowed else exit_codes.FAILED


def _bundle(args: argparse.Namespace) -> tuple[BundleContents, str]:
    """The bundle's contents and digest, from a file, a directory or the registry."""
    from meshwarden.policy_bundle import artifact as fmt
    from meshwarden.policy_bundle.build import build

    if args.bundle is not None and args.bundle.is_dir():
        built = build(args.bundle)
        return built.contents, built.digest
    raw = args.bundle.read_bytes() if args.bundle is not None else _from_registry(args)
    parsed = fmt.decode(raw)
    return fmt.contents_of(parsed), fmt.bundle_digest(parsed.digests)


def _from_registry(args: argparse.Namespace) -> bytes:
    import grpc

    from meshwarden.cli.bundle_history_cmd import fetch_revision

    access = registry_access.resolve(args, os.environ)
    try:
        return asyncio.run(fetch_revision(access, args.revision)).artifact
    except grpc.aio.AioRpcError as err:
        code = exit_codes.UNREACHABLE if err.code() is grpc.StatusCode.UNAVAILABLE else exit_codes.USAGE
        raise registry_access.AccessError(f"{err.code().name}: {err.details()}", code) from err


def _fail(message: str, code: int) -> int:
    print(f"meshwarden policy explain: {message}", file=sys.stderr)
    return code
