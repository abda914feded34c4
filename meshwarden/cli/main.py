"""`meshwarden`: subcommands for servers (registry serve, sidecar run), operators (agents
list, identity token create, call) and newcomers (demo).

Each subcommand lives in its own module, which registers its parser with `add_to(subparsers)`.
Start-up is what every command pays before it does anything, so the parser imports only the
module of the command being run: the others appear as one-line entries from COMMANDS below
(their help text must equal the module's; tests/unit/cli/test_main.py checks it). Adding a
command: one line in COMMANDS, naming its module, its help and the extra it needs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from meshwarden import logs
from meshwarden.cli import exit_codes
from meshwarden.cli.extras import MissingExtra, needs_extra
from meshwarden.config_layers import ConfigError


@dataclass(frozen=True)
class Command:
    name: str
    module: str  # under meshwarden.cli; its add_to registers `name`
    help: str
    extra: str | None = None  # the `meshwarden[extra]` it needs beyond the base install


COMMANDS: tuple[Command, ...] = (
    Command("registry", "registry_cmd", "run the registry", extra="registry"),
    Command("sidecar", "sidecar_cmd", "run the sidecar beside an agent; inspect one (status, config)", extra="sidecar"),
    Command("agents", "agents_cmd", "see the agents in the mesh"),
    Command("identity", "identity_cmd", "manage identities in the mesh (join tokens)"),
    Command("bundle", "bundle_cmd", "write, build, sign and check Cedar policy bundles"),
    Command("route", "route_cmd", "weighted version routes (canaries, gradual rollouts) with session pinning"),
    Command("receipts", "receipts_cmd", "tamper-evident receipts of every call"),
    Command("call", "call_cmd", "call a capability through a sidecar and print the result JSON"),
    Command("demo", "demo_cmd", "run a multi-agent scenario on a local mesh and explain it", extra="all"),
    # what sessions did and cost (issue 6)
    Command("sessions", "sessions_cmd", "sessions the registry holds receipts for"),
    Command("session", "sessions_cmd", "one session's timeline"),
    Command("costs", "costs_cmd", "spend, calls and cost per successful outcome"),
    Command(
        "changes",
        "changes_cmd",
        "success rate, cost per success and latency before and after each change, significant ones flagged",
    ),
    # MCP tool calls: the ledger (operator token), and schema hashes for mcp_servers.toml
    Command("tools", "tools_cmd", "MCP tools: the tool-call ledger, input-schema hashes"),
    # operator controls
    Command("kill", "kill_cmd", "stop calls at one scope, mesh-wide, in milliseconds (kill list, kill lift ID)"),
    Command(
        "isolate",
        "isolate_cmd",
        "take NAME@VERSION out of routing mesh-wide (isolate list, isolate lift NAME@VERSION)",
    ),
    Command("audit", "audit_cmd", "who did what to the mesh, when and why"),
    Command("tasks", "tasks_cmd", "submit tasks, see who holds them, and cancel or requeue them"),
    Command("approvals", "approvals_cmd", "calls waiting for a person's approval: list, show ID, approve ID, deny ID"),
    # day-two operations (issue 20)
    Command(
        "check",
        "check_cmd",
        "check the mesh: registry, CA, bundles on every sidecar, entities, routes, controls, clocks, data dirs",
    ),
    Command(
        "policy", "policy_cmd", "explain a policy decision: evaluate a call against a bundle offline", extra="sidecar"
    ),
    Command("sidecars", "sidecars_cmd", "every sidecar the registry knows, pure callers included"),
    Command("budget", "budget_cmd", "spending caps per team, workflow, agent, model or session (budget set|list|lift)"),
    # operators' habits: named registry contexts, shell completion
    Command("context", "context_cmd", "named registry contexts, like kubeconfig (context list|current|use|set|delete)"),
    Command("completion", "completion_cmd", "print a shell completion script: completion bash|zsh|fish"),
)


def _top_level() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="meshwarden",
        description="meshwarden: a service mesh for AI agents.",
    )
    parser.add_argument("--version", action="version", version=f"meshwarden {_version()}")
    _add_global_flags(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    return parser, commands


def _add_global_flags(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--log-level and --log-format, before the command (with their defaults) or after it
    (without, so that a value given before the command is kept unless repeated after it)."""
    level: dict[str, Any] = {"default": "info"} if defaults else {"default": argparse.SUPPRESS}
    formats: dict[str, Any] = {"default": "text"} if defaults else {"default": argparse.SUPPRESS}
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="what the command and servers log (default info)",
        **level,
    )
    parser.add_argument(
        "--log-format", choices=["text", "json"], help="text (default), or json: one object per line", **formats
    )


def _accept_global_flags_after(parser: argparse.ArgumentParser) -> None:
    """Every subcommand's parser, at any depth, also takes the global flags."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in {id(p): p for p in action.choices.values()}.values():
                if "--log-level" not in sub._option_string_actions:
                    _add_global_flags(sub, defaults=False)
                _accept_global_flags_after(sub)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("meshwarden")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser(full: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the complete parsers of the commands named in `full` (default: every
    command, which imports every command module) and one-line entries for the others."""
    parser, commands = _top_level()
    modules = {c.module for c in COMMANDS if full is None or c.name in full}
    registered: set[str] = set()  # one module may register several commands (sessions, session)
    for command in COMMANDS:
        if command.module not in modules:
            commands.add_parser(command.name, help=command.help, add_help=False)
        elif command.module not in registered:
            with needs_extra(command.extra, command.name):
                importlib.import_module(f"meshwarden.cli.{command.module}").add_to(commands)
            registered.add(command.module)
    _accept_global_flags_after(parser)
    return parser


def selected_command(argv: Sequence[str]) -> str:
    """Which command argv names, read with the one-line entries alone (no module imported);
    argparse exits with its usage message when argv names none, or asks for --help."""
    known, _ = build_parser(full=()).parse_known_args(argv)
    command: str = known.command
    return command


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if "_ARGCOMPLETE" in os.environ:  # a shell asking for completions (meshwarden completion SHELL)
        from meshwarden.cli.completion_cmd import complete

        complete(build_parser)
    try:
        name = selected_command(arguments)
        args = build_parser(full=[name]).parse_args(arguments)
        logs.configure(args.log_level, args.log_format)
        extra = next(c.extra for c in COMMANDS if c.name == name)
        with needs_extra(extra, name):
            code: int = args.run(args)
    except MissingExtra as exc:
        print(f"meshwarden: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    except ConfigError as exc:
        print(f"meshwarden: configuration error: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): what it read was enough
        _quiet_stdout()
        return exit_codes.OK
    return code


def _quiet_stdout() -> None:
    """Points stdout at /dev/null so the interpreter's final flush of the closed pipe raises nothing."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
