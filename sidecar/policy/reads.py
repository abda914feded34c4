"""What a set of policies reads of the request context, found in their parsed form.

Only that is sent to Cedar: building the context is most of the cost of a decision (cedarpy
parses it from JSON on every call), and an argument no policy reads cannot change a decision,
so it need not be mapped either (a float in an argument no policy looks at is not refused).

`context.args.amount < 100` reads args.amount whole; `context.args has amount` tests only
its presence; `context.args == {...}` (the chain used as a value) reads all of args.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Final

from cedarpy import pst


@dataclass(frozen=True, slots=True)
class Reads:
    """What is read of one value: all of it, some of its attributes, or only whether it exists."""

    whole: bool = False
    presence_only: bool = False
    parts: Mapping[str, Reads] = field(default_factory=dict)

    @property
    def anything(self) -> bool:
        return self.whole or self.presence_only or bool(self.parts)


NOTHING: Final = Reads()
EVERYTHING: Final = Reads(whole=True)


def context_reads(policies: Iterable[pst.Template]) -> Reads:
    """What `policies` read of `context`, merged."""
    paths: list[tuple[tuple[str, ...], bool]] = []  # (path under context, presence only)
    for policy in policies:
        for clause in policy.clauses:
            _collect(clause.expr, paths)
    return _build(paths)


def expression_reads(expr: pst.Expr) -> Reads:
    """What one condition reads of `context`."""
    paths: list[tuple[tuple[str, ...], bool]] = []
    _collect(expr, paths)
    return _build(paths)


def _collect(node: object, paths: list[tuple[tuple[str, ...], bool]]) -> None:
    if isinstance(node, pst.GetAttr):
        chain = _context_chain(node)
        if chain is not None:
            paths.append((chain, False))
            return
    elif isinstance(node, pst.HasAttr):
        chain = _context_chain(node.base)
        if chain is not None:
            paths.append((chain + tuple(node.attrs), True))
            return
    elif isinstance(node, pst.Var):
        if node.name == "context":
            paths.append(((), False))
        return
    if isinstance(node, Mapping):
        for value in node.values():
            _collect(value, paths)
    elif isinstance(node, tuple):
        for value in node:
            _collect(value, paths)
    elif is_dataclass(node) and not isinstance(node, type):
        for spec in fields(node):
            _collect(getattr(node, spec.name), paths)


def _context_chain(node: object) -> tuple[str, ...] | None:
    """("args", "amount") for `context.args.amount`; None if `node` is not such a chain."""
    names: list[str] = []
    while isinstance(node, pst.GetAttr):
        names.append(node.attr)
        node = node.base
    if isinstance(node, pst.Var) and node.name == "context":
        return tuple(reversed(names))
    return None


class _Node:
    __slots__ = ("whole", "presence", "children")

    def __init__(self) -> None:
        self.whole, self.presence = False, False
        self.children: dict[str, _Node] = {}


def _build(paths: list[tuple[tuple[str, ...], bool]]) -> Reads:
    root = _Node()
    for path, presence in paths:
        node = root
        for name in path:
            if node.whole:
                break
            node = node.children.setdefault(name, _Node())
        else:
            if presence:
                node.presence = True
            else:
                node.whole = True
    return _freeze(root)


def _freeze(node: _Node) -> Reads:
    if node.whole:
        return EVERYTHING
    parts = {name: _freeze(child) for name, child in node.children.items()}
    if parts:
        return Reads(parts=parts)
    return Reads(presence_only=True) if node.presence else NOTHING
