"""Keyset paging flags for the lists the registry pages (`kill list`, `isolate list`,
`budget list`, `route list`, `bundle history`), the convention `sidecars list` and `agents
list` use: `--limit N` (0: all) and `--cursor CURSOR`; a page that has a next one prints
`more: --cursor CURSOR` on stderr, so the table and the JSON stay what they were."""

from __future__ import annotations

import argparse
import sys
from typing import Final

MAX_LIMIT: Final = 10_000  # the registry's largest page (meshwarden.registry.keyset.MAX_PAGE)


def add_flags(parser: argparse.ArgumentParser, noun: str, order: str, *, default: int = 0) -> None:
    """--limit and --cursor; `order` (the sort key) goes in the help, as pages follow it."""
    every = "0: all" if default == 0 else f"default {default}"
    parser.add_argument(
        "--limit",
        type=int,
        default=default,
        metavar="N",
        help=f"a page of N {noun}, {order} ({every}; at most {MAX_LIMIT})",
    )
    parser.add_argument("--cursor", default="", metavar="CURSOR", help="the next page: the cursor a page printed")


def limit_error(command: str, limit: int, *, least: int = 0) -> str:
    """The message for a --limit outside least..MAX_LIMIT, "" when it is inside."""
    if least <= limit <= MAX_LIMIT:
        return ""
    lowest = "0 (all)" if least == 0 else str(least)
    return f"{command}: --limit must be from {lowest} to {MAX_LIMIT}, got {limit}"


def check_limit(command: str, limit: int, *, least: int = 0) -> bool:
    """False (and why on stderr) for a --limit out of range: exit 2 before asking."""
    message = limit_error(command, limit, least=least)
    if message:
        print(message, file=sys.stderr)
    return not message


def print_more(next_cursor: str) -> None:
    if next_cursor:
        print(f"more: --cursor {next_cursor}", file=sys.stderr)
