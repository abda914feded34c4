"""A replaced ActivePolicy is freed in a worker thread, one piece at a time.

Freeing a 1,000-policy ActivePolicy by reference counting took 6-10 ms of CPU here (30-40 ms
on a loaded machine): its policy sets (a cedarpy PolicySet per pair of agent and capability),
its policy syntax trees and its entities go in one chain of deallocations, and a chain of
deallocations never lets go of the GIL. Dropped on the event loop (at the swap, or by the last
call that used it), that is a stall of the loop; dropped whole in a worker, it holds the GIL
and so the loop just as long. `take_apart` frees it in a worker one container entry at a time,
so that the interpreter can hand the GIL to the loop's thread between any two pieces
(benchmarks/bundle_push_p99.py).

Only once nothing else holds the policy: a call in flight keeps deciding with the policy it
started with, so the bundle loader waits until `sole_reference` says its own is the last one.
"""

from __future__ import annotations

import sys
from typing import Final

from meshwarden.sidecar.policy.active_policy import ActivePolicy

# How deep take_apart goes into objects' attributes (ActivePolicy -> ToolPolicy -> its dicts).
_DEPTH: Final = 3
# sys.getrefcount of an object only its caller's variable holds, seen from _let_go: that
# variable, _let_go's parameter and getrefcount's own argument.
_ONLY_THE_CALLERS: Final = 3


def sole_reference(box: list[ActivePolicy]) -> bool:
    """Whether `box` (one policy) holds the only reference to its policy: no call uses it."""
    return sys.getrefcount(box[0]) <= 2  # the list's reference and getrefcount's own argument


def take_apart(box: list[ActivePolicy]) -> None:
    """Empties `box` and frees its policy, one dict item, list item or attribute at a time.
    The policy must be referenced by `box` alone (see `sole_reference`): it is unusable after.
    What something else also holds (a module's constant, the MCP servers a gateway still
    serves) is only let go of, never emptied."""
    if not sole_reference(box):  # never expected: it was checked; then it is only let go of
        box.clear()
        return
    policy = box.pop()
    _empty(policy, _DEPTH)
    del policy  # what is left: an object without attributes


def _empty(value: object, depth: int) -> None:
    if depth == 0:
        return
    if isinstance(value, dict):
        while value:
            _key, item = value.popitem()
            _let_go(item, depth)
            del item
    elif isinstance(value, list):
        while value:
            item = value.pop()
            _let_go(item, depth)
            del item
    elif type(value).__module__.startswith("meshwarden.") and hasattr(value, "__dict__"):
        attributes = vars(value)
        while attributes:
            _name, item = attributes.popitem()
            _let_go(item, depth)
            del item


def _let_go(item: object, depth: int) -> None:
    """Empties `item` first when the caller's reference is its only one."""
    if sys.getrefcount(item) <= _ONLY_THE_CALLERS:
        _empty(item, depth - 1)
