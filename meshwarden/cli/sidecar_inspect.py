"""`meshwarden sidecar status` and `sidecar config`: one sidecar as its admin port shows it
(/status, /config; sidecar/inspection.py), like `istioctl proxy-config` against Envoy's
/config_dump. Tables by default, `--output json` prints the document as the sidecar sent it.

Exit codes: 0 shown; 3 the admin port could not be reached; 1 it answered with an error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any, Final

from meshwarden.addresses import AddressError, parse_host_port
from meshwarden.cli import exit_codes

DEFAULT_ADMIN: Final = "127.0.0.1:9901"
TIMEOUT_S: Final = 5.0


def add_actions(actions: Any) -> None:
    for name, help_text in (
        ("status", "a running sidecar's bundle and policy slice, routes, kill switches, catalog, breakers, backlog"),
        ("config", "a running sidecar's effective settings and where each came from (flag, env, file, default)"),
    ):
        action = actions.add_parser(name, help=help_text, description=help_text + ", read from its admin port.")
        action.add_argument(
            "--admin",
            default=DEFAULT_ADMIN,
            metavar="HOST:PORT",
            help=f"the sidecar's --admin-listen (default {DEFAULT_ADMIN}; its ready line says `admin`)",
        )
        action.add_argument("--output", choices=["table", "json"], default="table", help="table (default) or json")
        action.set_defaults(run=_status if name == "status" else _config)


def _status(args: argparse.Namespace) -> int:
    return _show(args, "/status", render_status)


def _config(args: argparse.Namespace) -> int:
    return _show(args, "/config", render_config)


def _show(args: argparse.Namespace, path: str, render: Any) -> int:
    command = f"meshwarden sidecar {path.strip('/')}"
    try:
        address = parse_host_port(args.admin, what="--admin")
    except AddressError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    url = f"http://{address}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:  # noqa: S310 (http to an address given)
            document = json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        hint = (
            "; is this a sidecar of this version (the registry's admin port has no /status)?" if exc.code == 404 else ""
        )
        print(f"{command}: {url} answered {exc.code} {exc.reason}{hint}", file=sys.stderr)
        return exit_codes.FAILED
    except (urllib.error.URLError, OSError) as exc:
        print(
            f"{command}: cannot reach the sidecar's admin port at {address} ({getattr(exc, 'reason', exc)}); "
            "give its --admin-listen with --admin HOST:PORT",
            file=sys.stderr,
        )
        return exit_codes.UNREACHABLE
    print(json.dumps(document, indent=2) if args.output == "json" else render(document))
    return exit_codes.OK


def table(rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns, the first row a header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def render_config(doc: dict[str, Any]) -> str:
    rows = [("SETTING", "VALUE", "FROM")] + [(s["flag"], s["value"] or "-", s["origin"]) for s in doc["settings"]]
    return f"sidecar of agent {doc['agent']}\n" + table(rows)


def render_status(doc: dict[str, Any]) -> str:
    bundle = doc["bundle"]
    now = float(doc["now"])
    lines = [
        f"agent      {doc['agent']} {doc['version'] or '(agent not registered)'}, instance {doc['instance_id']}",
        f"identity   {doc['spiffe_id']}",
        f"clock      {datetime.datetime.fromtimestamp(now, datetime.UTC):%Y-%m-%d %H:%M:%S} UTC",
        f"serves     {', '.join(doc['serves']) or '- (a pure caller)'}",
        "bundle     "
        + (f"{bundle['label']} active ({bundle['active_digest'][:19]}…)" if bundle["label"] else "none active")
        + f"; trusted keys: {', '.join(bundle['trusted_key_ids']) or 'none (--bundle-keys)'}",
    ]
    if bundle["refused_revision"]:
        lines.append(f"           refused rev {bundle['refused_revision']}: {bundle['refusal']}")
    for direction in ("outbound", "inbound"):
        policies = bundle[f"{direction}_slice"]
        lines.append(f"policy     {direction}: {len(policies)} polic(ies) can apply to this agent")
        lines += [f"             {p['effect']:<6}  {p['id']}  {p['reason']}".rstrip() for p in policies]
    routes = doc["routes"]
    lines.append("routes     " + ("; ".join(f"{c}: {_weights(w)}" for c, w in routes.items()) or "none"))
    kills = doc["kill_switches"]
    lines.append("kills      " + ("; ".join(f"{k['id']} ({k['scope']}): {k['reason']}" for k in kills) or "none"))
    receipts = doc["receipts"]
    lines.append(
        "receipts   off"
        if receipts is None
        else f"receipts   {receipts['backlog']} waiting to be shipped ({receipts['backlog_bytes']} bytes)"
    )
    catalog = doc["catalog"]
    lines.append(
        f"catalog    revision {catalog['revision']}{'' if catalog['synced'] else ' (not received yet)'}, "
        f"{len(catalog['instances'])} instance(s)"
    )
    if catalog["instances"]:
        rows = [("INSTANCE", "AGENT", "VERSION", "PEER", "BREAKER", "HEALTH", "WHY")] + [
            (
                i["instance_id"],
                i["agent"],
                i["version"],
                i["peer_address"],
                i["breaker"],
                i["health"],
                i["health_reason"] or "-",
            )
            for i in catalog["instances"]
        ]
        lines += ["  " + line for line in table(rows).splitlines()]
    return "\n".join(lines)


def _weights(weights: dict[str, int]) -> str:
    return ",".join(f"{v}={w}" for v, w in weights.items())
