"""JSON as RFC 8259 defines it, and no deeper than anyone needs: the parser for payloads
that come from outside (arguments, results).

Python's json module accepts NaN, Infinity and -Infinity (not JSON), turns 1e400 into
infinity, and on a document nested a hundred thousand levels deep raises RecursionError,
which is no ValueError and became an INTERNAL error with a traceback (issue 14). Here each of
those is a ValueError saying what is wrong, and nesting is limited to MAX_DEPTH levels, well
within what the validators and the policy mapping recurse through safely.
"""

from __future__ import annotations

import json
import math
from typing import Final

MAX_DEPTH: Final = 64


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON (JSON has no NaN or Infinity); send a number, a string or null")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        shown = text if len(text) <= 24 else text[:21] + "..."
        raise ValueError(f"the number {shown} is too large for a 64-bit float (JSON numbers must be finite)")
    return value


_DECODER: Final = json.JSONDecoder(parse_float=_finite, parse_constant=_no_constant)


def loads(data: bytes) -> object:
    """The value in `data` (UTF-8 JSON text); ValueError (UnicodeDecodeError included) saying why not."""
    text = data.decode("utf-8")
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels of arrays and objects") from None
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH:  # else it cannot be that deep: skip the walk
        check_depth(value)
    return value


def check_depth(value: object) -> None:
    """ValueError when `value` nests arrays and objects more than MAX_DEPTH levels deep."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > MAX_DEPTH:
                    raise ValueError(f"nested deeper than {MAX_DEPTH} levels of arrays and objects")
                stack.append((child, depth + 1))
