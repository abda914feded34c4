"""Which policies can apply to a request, from their scopes alone.

A policy's scope (`principal == ...`, `principal in Team::"x"`, `resource is Capability`)
depends only on the request's principal, action and resource and on the entity hierarchy,
all fixed for a bundle revision. Cedar evaluates a policy whose scope does not match as "not
applicable" (the scope is tested before the conditions, and `&&` stops there), so leaving
such a policy out of the set Cedar sees cannot change the decision, the deciding policies or
the errors. That is what makes slicing safe, and tests/unit/sidecar/policy check it on
random bundles.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from cedarpy import pst

ACTION_CALL: Final = ("Action", "call")


@dataclass(frozen=True, slots=True)
class Uid:
    type: str
    id: str


class Hierarchy:
    """The ancestors of every entity in a bundle's entities.json, transitively."""

    def __init__(self, parents: Mapping[Uid, Sequence[Uid]]) -> None:
        self._ancestors: dict[Uid, frozenset[Uid]] = {}
        for uid in parents:
            self._ancestors[uid] = _closure(uid, parents)

    @classmethod
    def from_entities_json(cls, text: str) -> Hierarchy:
        """From Cedar entity JSON already accepted by cedarpy (so its shape is known good)."""
        parents: dict[Uid, list[Uid]] = {}
        for entity in json.loads(text):
            uid = Uid(entity["uid"]["type"], entity["uid"]["id"])
            parents[uid] = [Uid(p["type"], p["id"]) for p in entity.get("parents", [])]
        return cls(parents)

    def ancestors(self, uid: Uid) -> frozenset[Uid]:
        return self._ancestors.get(uid, frozenset())


class ScopeIndex:
    """The policies whose principal (or resource) scope can match an entity of `entity_type`,
    indexed by what the scope names, so matching one name costs a few set unions."""

    def __init__(
        self, entity_type: str, scopes: Sequence[pst.PrincipalOrResourceConstraint], hierarchy: Hierarchy
    ) -> None:
        self._type, self._hierarchy = entity_type, hierarchy
        unscoped: set[int] = set()
        equal: dict[str, set[int]] = {}
        within: dict[Uid, set[int]] = {}
        for index, scope in enumerate(scopes):
            if isinstance(scope, pst.ScopeAny):
                unscoped.add(index)
            elif isinstance(scope, pst.ScopeIs):
                if str(scope.entity_type) == entity_type:
                    unscoped.add(index)
            elif isinstance(scope, pst.ScopeEq):
                target = _uid(scope.entity)
                if target is None:
                    unscoped.add(index)  # a template slot: cannot occur in a built bundle; keep it
                elif target.type == entity_type:
                    equal.setdefault(target.id, set()).add(index)
            elif isinstance(scope, (pst.ScopeIn, pst.ScopeIsIn)):
                if isinstance(scope, pst.ScopeIsIn) and str(scope.entity_type) != entity_type:
                    continue
                target = _uid(scope.entity)
                if target is None:
                    unscoped.add(index)
                else:
                    within.setdefault(target, set()).add(index)
            else:
                unscoped.add(index)  # a scope form this version does not know: keep the policy
        self._unscoped = frozenset(unscoped)
        self._equal = {name: frozenset(found) for name, found in equal.items()}
        self._within = {uid: frozenset(found) for uid, found in within.items()}

    @property
    def unscoped(self) -> frozenset[int]:
        """The policies that match any entity of this type (and so any unknown one)."""
        return self._unscoped

    def named(self) -> frozenset[str]:
        """Names of this type that some scope names: with the bundle's entities, every name
        whose matching set can differ from an unknown name's."""
        return frozenset(self._equal) | frozenset(u.id for u in self._within if u.type == self._type)

    def matching(self, name: str) -> frozenset[int]:
        uid = Uid(self._type, name)
        found = self._unscoped | self._equal.get(name, frozenset()) | self._within.get(uid, frozenset())
        for ancestor in self._hierarchy.ancestors(uid):
            found |= self._within.get(ancestor, frozenset())
        return found


def action_may_match(constraint: pst.ActionConstraint) -> bool:
    """False only when the policy names an action other than Action::"call"; `action in [...]`
    is kept whatever it names (action groups come from the schema, not worth modelling)."""
    if isinstance(constraint, pst.ActionEq):
        return (str(constraint.entity.type), constraint.entity.id) == ACTION_CALL
    return True


def _uid(entity: pst.EntityOrSlot) -> Uid | None:
    return Uid(str(entity.type), entity.id) if isinstance(entity, pst.EntityUid) else None


def _closure(start: Uid, parents: Mapping[Uid, Sequence[Uid]]) -> frozenset[Uid]:
    found: set[Uid] = set()
    stack: list[Uid] = list(parents.get(start, ()))
    while stack:
        uid = stack.pop()
        if uid not in found:
            found.add(uid)
            stack.extend(parents.get(uid, ()))
    return frozenset(found)
