"""Where in a Cedar source file something is: statements with their lines, and the line of an error.

cedarpy's errors carry no source location (4.12: "unexpected token `}`", nothing more), yet a
person fixing a bundle needs file and line. Two facts recover it:
- A policy file is a sequence of statements ending in `;` (outside strings and `//`
  comments), so each policy can be parsed alone and its first line is known.
- A parser reading a prefix of the text fails at the same token as on the whole text once the
  prefix reaches that token, and with "unexpected end of input" before. So the shortest prefix
  (in whole lines) that reproduces the message ends on the line of the error.
Errors found after parsing (an unknown function, an unresolved type) reproduce only on the
whole text (or the whole declaration); for those the first line naming the quoted culprit
is taken, if there is one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

_QUOTED: Final = re.compile(r"`([^`]+)`")
_UNRESOLVED: Final = re.compile(r"resolve types?: ([A-Za-z_][A-Za-z0-9_:]*(?:, [A-Za-z_][A-Za-z0-9_:]*)*)")
_SYNTAX: Final = re.compile(r"unexpected token|unexpected end of input|invalid token")


@dataclass(frozen=True, slots=True)
class Statement:
    """One `;`-terminated statement of a Cedar file (annotations and comments before it included)."""

    text: str
    line: int  # 1-based line of the statement's first non-blank, non-comment character
    terminated: bool  # False for trailing text with no `;`


def split_statements(source: str) -> list[Statement]:
    """The statements of `source` in order; blank and comment-only stretches are skipped."""
    statements: list[Statement] = []
    start: int | None = None  # offset of the current statement's first significant character
    position, length = 0, len(source)
    while position < length:
        char = source[position]
        if char == "/" and source.startswith("//", position):
            newline = source.find("\n", position)
            position = length if newline < 0 else newline
            continue
        if char.isspace():
            position += 1
            continue
        if start is None:
            start = position
        if char == '"':
            position = _end_of_string(source, position)
            continue
        if char == ";":
            statements.append(Statement(source[start : position + 1], _line_at(source, start), True))
            start = None
        position += 1
    if start is not None:
        statements.append(Statement(source[start:], _line_at(source, start), False))
    return statements


def locate_error(text: str, first_line: int, message: str, parse: Callable[[str], object]) -> int:
    """The file line of the error `parse(text)` raised with `message`; `text` starts on `first_line`.

    `parse` must raise ValueError on bad input, as cedarpy's parsers do."""
    lines = text.rstrip().split("\n")
    located = len(lines)
    if "unexpected end of input" in message:
        return first_line + located - 1  # every shorter prefix ends early too: the end it is
    for count in range(1, len(lines)):
        try:
            parse("\n".join(lines[:count]))
        except ValueError as exc:
            if str(exc) == message:
                located = count
                break
    if not _SYNTAX.search(message):
        located = _first_line_naming(lines[:located], _culprits(message)) or located
    return first_line + located - 1


def culprit_line(text: str, first_line: int, message: str) -> int:
    """The first file line of `text` naming what `message` quotes, else `first_line`: how a
    validation error ("attribute `tier` ... not found") is pinned inside its policy."""
    found = _first_line_naming(text.split("\n"), _culprits(message))
    return first_line + found - 1 if found else first_line


def _culprits(message: str) -> list[str]:
    names = _QUOTED.findall(message) + [n for found in _UNRESOLVED.findall(message) for n in found.split(", ")]
    return [name for name in names if not re.fullmatch(r"policy\d+", name)]


def _first_line_naming(lines: list[str], names: list[str]) -> int | None:
    for name in names:
        word = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])")
        for number, line in enumerate(lines, start=1):
            if word.search(line):
                return number
    return None


def _end_of_string(source: str, opening: int) -> int:
    """The offset just past the string literal that opens at `opening` (or the end of source)."""
    position = opening + 1
    while position < len(source):
        char = source[position]
        if char == "\\":
            position += 2
            continue
        if char == '"':
            return position + 1
        position += 1
    return len(source)


def _line_at(source: str, offset: int) -> int:
    return source.count("\n", 0, offset) + 1
