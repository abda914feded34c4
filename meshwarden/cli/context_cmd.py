"""`meshwarden context list|current|use NAME|set NAME …|delete NAME`: named registry contexts
(meshwarden/cli/contexts.py says what one holds and where the file lives)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, replace
from typing import Any

from meshwarden.cli import contexts, exit_codes
from meshwarden.cli.contexts import Context, ContextError
from meshwarden.cli.session_render import table


def add_to(commands: Any) -> None:
    parser = commands.add_parser(
        "context",
        help="named registry contexts, like kubeconfig (context list|current|use|set|delete)",
        description="A context holds the registry's address, the CA to trust and the operator token file, "
        "so operators' commands need no flags. Flags and MESHWARDEN_* variables still win over it.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    listing = verbs.add_parser("list", help="every context; * marks the current one")
    listing.add_argument("--output", choices=["table", "json"], default="table", help="table (default) or json")
    verbs.add_parser("current", help="print the current context's name")
    use = verbs.add_parser("use", help="make NAME the current context")
    use.add_argument("name", metavar="NAME", help="a context from `meshwarden context list`")
    set_ = verbs.add_parser("set", help="create NAME, or change the settings given; NAME becomes current if none is")
    set_.add_argument("name", metavar="NAME", help="1 to 63 letters, digits, '-', '_' or '.'")
    set_.add_argument("--registry", metavar="HOST:PORT", help="the registry's TLS address")
    set_.add_argument("--ca-pin", metavar="sha256:HEX", help="the registry CA's fingerprint (its ready line shows it)")
    set_.add_argument(
        "--pin-presented-ca",
        action="store_true",
        help="ask the registry for its CA now and pin that fingerprint (check it against the registry's ready line)",
    )
    set_.add_argument("--trust-bundle", metavar="FILE", help="CA certificates to trust, PEM (instead of a pin)")
    set_.add_argument("--trust-domain", metavar="DOMAIN", help="the mesh's trust domain (default: from the CA)")
    set_.add_argument("--operator-token-file", metavar="FILE", help="the registry's operator.token")
    delete = verbs.add_parser("delete", help="remove NAME")
    delete.add_argument("name", metavar="NAME", help="a context from `meshwarden context list`")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        return _VERBS[args.verb](args)
    except ContextError as exc:
        print(f"meshwarden context: {exc}", file=sys.stderr)
        return exit_codes.USAGE


def _list(args: argparse.Namespace) -> int:
    loaded = contexts.load(os.environ)
    if args.output == "json":
        named = {name: asdict(c) for name, c in sorted(loaded.named.items())}
        print(json.dumps({"current": loaded.current, "file": str(contexts.path(os.environ)), "contexts": named}))
        return exit_codes.OK
    rows = [("CURRENT", "NAME", "REGISTRY", "CA", "OPERATOR TOKEN FILE")]
    for name, c in sorted(loaded.named.items()):
        ca = c.ca_pin[:19] + "…" if c.ca_pin else c.trust_bundle or "(first use, loopback only)"
        rows.append(("*" if name == loaded.current else "", name, c.registry or "(default)", ca, c.operator_token_file))
    print(table(rows))
    return exit_codes.OK


def _current(_: argparse.Namespace) -> int:
    current = contexts.load(os.environ).current
    if not current:
        print("meshwarden context: no current context; set one with `meshwarden context use NAME`", file=sys.stderr)
        return exit_codes.NOT_FOUND
    print(current)
    return exit_codes.OK


def _use(args: argparse.Namespace) -> int:
    loaded = contexts.load(os.environ)
    contexts.selected(args.name, os.environ)  # refuses an unknown name, listing the known ones
    contexts.save(replace(loaded, current=args.name), os.environ)
    print(f"now using context {args.name}")
    return exit_codes.OK


def _set(args: argparse.Namespace) -> int:
    if sum(bool(x) for x in (args.pin_presented_ca, args.ca_pin, args.trust_bundle)) > 1:
        raise ContextError("give one of --ca-pin, --pin-presented-ca and --trust-bundle")
    loaded = contexts.load(os.environ)
    old = loaded.named.get(args.name, Context())
    given = {
        key: getattr(args, key)
        for key in ("registry", "ca_pin", "trust_bundle", "trust_domain", "operator_token_file")
        if getattr(args, key) is not None
    }
    if "operator_token_file" in given:
        given["operator_token_file"] = os.path.abspath(given["operator_token_file"])  # any directory later
    if "trust_bundle" in given:
        given["trust_bundle"] = os.path.abspath(given["trust_bundle"])
    if args.pin_presented_ca:
        given["ca_pin"] = _presented_pin(given.get("registry") or old.registry)
    if given.get("ca_pin"):
        given.setdefault("trust_bundle", "")  # one way of trusting the CA at a time
    elif given.get("trust_bundle"):
        given.setdefault("ca_pin", "")
    updated = contexts.with_context(loaded, args.name, replace(old, **given))
    file = contexts.save(replace(updated, current=updated.current or args.name), os.environ)
    print(f"context {args.name} saved in {file}")
    return exit_codes.OK


def _presented_pin(registry: str) -> str:
    from meshwarden.addresses import DEFAULT_REGISTRY_ADDRESS, AddressError, parse_host_port
    from meshwarden.identity.bootstrap import presented_ca_fingerprint

    address = registry or DEFAULT_REGISTRY_ADDRESS
    try:
        found = presented_ca_fingerprint(parse_host_port(address, what="registry address"))
    except AddressError as exc:
        raise ContextError(str(exc)) from exc
    if found is None:
        raise ContextError(f"cannot read the CA the registry at {address} presents; is it running there?")
    print(f"pinning CA {found}, presented by {address}: check it against the registry's ready line")
    return found


def _delete(args: argparse.Namespace) -> int:
    loaded = contexts.load(os.environ)
    contexts.selected(args.name, os.environ)
    named = {n: c for n, c in loaded.named.items() if n != args.name}
    contexts.save(contexts.Contexts("" if loaded.current == args.name else loaded.current, named), os.environ)
    print(f"context {args.name} deleted")
    return exit_codes.OK


_VERBS = {"list": _list, "current": _current, "use": _use, "set": _set, "delete": _delete}
