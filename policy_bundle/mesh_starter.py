"""A starting bundle for the user's own mesh, from what the registry knows: every agent
(pure callers included) and every capability, so nobody writes entities.json by hand to get
going, and `--from-registry` on that bundle later adds what appeared since (new agents, new
capabilities) without touching what a person already edited.

Defaults are the cautious middle: agents of tier 2, each its own team; capabilities of risk
tier 1, no side effects, owned by the agent serving them. The policies permit calls to risk
tiers 1 and 2 and keep tier-1 agents away from risk tier 3, with `has` guards so an agent or
capability added to the mesh before the bundle lists it is judged on what is known rather
than denied because an attribute is missing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from meshwarden.identity.spiffe_ids import agent_id
from meshwarden.policy_bundle.init import SCHEMA
from meshwarden.policy_bundle.manifest import MANIFEST_FILE

ENTITIES_FILE: Final = "entities.json"
DEFAULT_AGENT_TIER: Final = 2
DEFAULT_RISK_TIER: Final = 1

MANIFEST: Final = """\
# The bundle's identity. `revision` must grow with every release you sign: sidecars refuse a
# bundle whose revision is not newer than the one they run. `bundle build --revision N` and
# `bundle init --from-registry` on this directory raise it for you.
name = "{name}"
revision = {revision}
description = "Starting policy for the agents and capabilities the registry knew"

[settings]
store_raw_arguments = false
"""

BASELINE: Final = """\
// Everyday calls: anything that cannot move money or delete data (risk tier 1 or 2 in
// entities.json; `bundle init --from-registry` lists new capabilities at tier 1). Raise a
// capability's risk_tier to 3 to keep it from this permit. Everything no policy permits is denied.
@id("low-and-medium-risk")
@reason("calls to capabilities of risk tier 1 or 2 are allowed")
permit (principal, action == Action::"call", resource)
when { resource has risk_tier && resource.risk_tier <= 2 };
"""

TIERS: Final = """\
// Least trusted agents (tier 1) never reach high-risk capabilities (risk tier 3).
@id("tier1-no-risk3")
@reason("agents of tier 1 may not call capabilities of risk tier 3; ask the platform team to review this agent's tier")
forbid (principal, action == Action::"call", resource)
when { principal has tier && principal.tier == 1 && resource has risk_tier && resource.risk_tier == 3 };
"""


@dataclass(frozen=True, slots=True)
class MeshInventory:
    """What the registry knows: each agent's name and the capabilities it serves (none for a
    pure caller)."""

    agents: Mapping[str, frozenset[str]]

    def capabilities(self) -> dict[str, str]:
        """capability -> the agent that serves it (the first by name when several do)."""
        owners: dict[str, str] = {}
        for agent in sorted(self.agents):
            for capability in sorted(self.agents[agent]):
                owners.setdefault(capability, agent)
        return owners


def starter_files(mesh: MeshInventory, trust_domain: str, name: str = "mesh", revision: int = 1) -> dict[str, str]:
    """Relative path -> text of a new bundle describing `mesh`: named `name` and numbered
    `revision` (a mesh runs one bundle, whose revisions only grow)."""
    return {
        MANIFEST_FILE: MANIFEST.format(name=name, revision=revision),
        "schema.cedarschema": SCHEMA,
        ENTITIES_FILE: json.dumps(merged_entities([], mesh, trust_domain)[0], indent=2) + "\n",
        "policies/baseline.cedar": BASELINE,
        "policies/tiers.cedar": TIERS,
    }


def merged_entities(
    existing: list[dict[str, object]], mesh: MeshInventory, trust_domain: str
) -> tuple[list[dict[str, object]], list[str]]:
    """`existing` plus an entity for every agent, team and capability of `mesh` it lacks, with
    the defaults above; also the uids added ("Agent::\\"echo\\""), in order."""
    have = {_uid(e) for e in existing}
    added: list[dict[str, object]] = []
    for agent in sorted(mesh.agents):
        added.append({"uid": {"type": "Team", "id": agent}, "attrs": {}, "parents": []})
        added.append(
            {
                "uid": {"type": "Agent", "id": agent},
                "attrs": {"spiffe_id": agent_id(trust_domain, agent), "team": agent, "tier": DEFAULT_AGENT_TIER},
                "parents": [{"type": "Team", "id": agent}],
            }
        )
    for capability, owner in sorted(mesh.capabilities().items()):
        attrs = {"owner": owner, "risk_tier": DEFAULT_RISK_TIER, "side_effects": False, "kind": "capability"}
        added.append({"uid": {"type": "Capability", "id": capability}, "attrs": attrs, "parents": []})
    new = [e for e in added if _uid(e) not in have]
    return existing + new, [_uid(e) for e in new]


def _uid(entity: Mapping[str, object]) -> str:
    uid = entity.get("uid")
    if isinstance(uid, Mapping):
        return f'{uid.get("type")}::"{uid.get("id")}"'
    return ""
