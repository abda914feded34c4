"""What a bundle holds, listed for people and scripts (`meshwarden bundle show`): its
policies with their ids, effects, reasons and places, and its entities counted by type."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import cedarpy

from meshwarden.policy_bundle.artifact import BundleContents
from meshwarden.policy_bundle.cedar_source import split_statements


@dataclass(frozen=True, slots=True)
class PolicySummary:
    policy_id: str
    effect: str  # "permit" | "forbid"
    reason: str  # "" when the policy has no @reason
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class Inventory:
    policies: tuple[PolicySummary, ...]
    entities_by_type: tuple[tuple[str, int], ...]  # sorted by type


def inventory(contents: BundleContents) -> Inventory:
    """Reads a bundle already built (or verified): its text is known to parse."""
    policies: list[PolicySummary] = []
    for policy_file in contents.policy_files:
        for statement in split_statements(policy_file.text):
            try:
                tree = cedarpy.PolicySet.from_str(statement.text).to_pst()
            except ValueError:
                continue  # not from `bundle build`; `bundle build` reports it with its line
            for template in tree.static_policies.values():
                policies.append(
                    PolicySummary(
                        policy_id=template.annotations.get("id", template.id),
                        effect=template.effect,
                        reason=template.annotations.get("reason", ""),
                        file=policy_file.path,
                        line=statement.line,
                    )
                )
    counts = Counter(
        str(entity.get("uid", {}).get("type"))
        for entity in json.loads(contents.entities_text)
        if isinstance(entity, dict)
    )
    return Inventory(policies=tuple(policies), entities_by_type=tuple(sorted(counts.items())))
