"""`meshwarden completion bash|zsh|fish`: the shell's completion script, and the completer it
calls back.

argcomplete (a well-kept library, used by pip-installed tools such as the AWS CLI) writes the
scripts for all three shells and answers the shell's requests from our argparse parsers, so
completion never drifts from the flags. On each TAB the shell runs `meshwarden` with
_ARGCOMPLETE set; `complete` then builds only the named command's parser, the same lazy
start-up every command has, so completing costs what starting one command costs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Collection
from typing import Any

SHELLS = ("bash", "zsh", "fish")


def add_to(commands: Any) -> None:
    parser = commands.add_parser(
        "completion",
        help="print a shell completion script: completion bash|zsh|fish",
        description="Load it in your shell: bash: `source <(meshwarden completion bash)` (or put it in "
        "/etc/bash_completion.d/meshwarden); zsh: `source <(meshwarden completion zsh)` after compinit; "
        "fish: `meshwarden completion fish > ~/.config/fish/completions/meshwarden.fish`.",
    )
    parser.add_argument("shell", choices=SHELLS, help="the shell to write the script for")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from argcomplete.shell_integration import shellcode

    sys.stdout.write(shellcode(["meshwarden"], shell=args.shell))
    return 0


def complete(build_parser: Callable[[Collection[str] | None], argparse.ArgumentParser]) -> None:
    """Answers the shell's completion request and exits (argcomplete's protocol)."""
    import argcomplete

    from meshwarden.cli.main import COMMANDS

    line = os.environ.get("COMP_LINE", "")
    point = int(os.environ.get("COMP_POINT", len(line)))
    try:
        words = shlex.split(line[:point])
    except ValueError:  # an open quote: the shell completes inside it
        words = line[:point].split()
    finished = words if line[:point].endswith(" ") else words[:-1]
    names = {c.name for c in COMMANDS}
    command = next((w for w in finished[1:] if w in names), None)
    argcomplete.autocomplete(build_parser([command] if command else ()))
