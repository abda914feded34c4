"""Slicing never changes a decision: on random bundles and random calls, every slicing (with
and without the decision cache) decides exactly as the whole bundle does, and as plain Cedar
does on the whole bundle with the whole context (plus the fail-closed rule for forbids)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import cedarpy
import pytest

from meshwarden.policy_bundle.verify import VerifiedBundle
from meshwarden.sidecar.policy import ActivePolicy, Caller, CallFacts, Decision, Direction, Slicing
from tests.policy_helpers import verified

SCHEMA = """\
entity Org;
entity Team in [Org];
entity Toolset;
entity Agent in [Team] { spiffe_id: String, team: String, tier: Long };
entity Capability in [Toolset] { owner: String, risk_tier: Long, side_effects: Bool, kind: String };
action "call" appliesTo {
  principal: [Agent],
  resource: [Capability],
  context: {
    args: { amount?: Long, flag?: Bool, tags?: Set<String>, customer?: { id: String, tier?: Long } },
    session_id: String,
    workflow_id: String,
    time: { unix: Long, hour: Long, weekday: Long },
    cost_estimate_micro_usd?: Long,
  },
};
"""
AGENTS = [f"a{i}" for i in range(6)]
CAPABILITIES = [f"c{i}.op" for i in range(5)]
TEAMS, ORGS, TOOLSETS = ["t0", "t1", "t2", "t3"], ["o0", "o1"], ["s0", "s1"]
CONDITIONS = [
    "principal.tier >= 2",
    "resource.risk_tier <= principal.tier",
    "resource.side_effects",
    'principal.team == "t1"',
    "context.args has amount && context.args.amount < 100",
    "context.args has flag && context.args.flag",
    'context.args has tags && context.args.tags.contains("x")',
    "context.args has customer && context.args.customer has tier && context.args.customer.tier > 1",
    'context.args has customer && context.args.customer.id == "C1"',
    "context.time.weekday >= 6",
    "context.time.hour < 12",
    'context.session_id == ""',
    "context has cost_estimate_micro_usd && context.cost_estimate_micro_usd > 500",
    'principal in Team::"t2"',
    'resource in Toolset::"s1"',
    "true",
]


def principal_scope(rng: random.Random) -> str:
    return rng.choice(
        [
            "principal",
            f'principal == Agent::"{rng.choice([*AGENTS, "ghost"])}"',
            f'principal in Team::"{rng.choice(TEAMS)}"',
            f'principal in Org::"{rng.choice(ORGS)}"',
            "principal is Agent",
            f'principal is Agent in Team::"{rng.choice(TEAMS)}"',
            f'principal in Agent::"{rng.choice(AGENTS)}"',
        ]
    )


def resource_scope(rng: random.Random) -> str:
    return rng.choice(
        [
            "resource",
            f'resource == Capability::"{rng.choice([*CAPABILITIES, "phantom.op"])}"',
            f'resource in Toolset::"{rng.choice(TOOLSETS)}"',
            "resource is Capability",
        ]
    )


def random_files(rng: random.Random, count: int) -> dict[str, str | None]:
    policies = []
    for i in range(count):
        effect = "permit" if rng.random() < 0.7 else "forbid"
        action = rng.choice(['action == Action::"call"', "action", 'action in [Action::"call"]'])
        conditions = rng.sample(CONDITIONS[:-1], rng.randint(1 if effect == "forbid" else 0, 2))  # no blanket forbids
        clauses = " ".join(
            f"{'when' if effect == 'forbid' else rng.choice(['when', 'unless'])} {{ {c} }}" for c in conditions
        )
        reason = f'@reason("reason {i}")\n' if rng.random() < 0.5 else ""
        policies.append(
            f'@id("p{i}")\n{reason}{effect} ({principal_scope(rng)}, {action}, {resource_scope(rng)}) {clauses};'
        )
    team_of = {a: rng.choice(TEAMS) for a in AGENTS}
    entities: list[dict[str, object]] = [{"uid": {"type": "Org", "id": o}, "attrs": {}, "parents": []} for o in ORGS]
    entities += [
        {"uid": {"type": "Team", "id": t}, "attrs": {}, "parents": [{"type": "Org", "id": rng.choice(ORGS)}]}
        for t in TEAMS
    ]
    entities += [{"uid": {"type": "Toolset", "id": s}, "attrs": {}, "parents": []} for s in TOOLSETS]
    entities += [
        {
            "uid": {"type": "Agent", "id": a},
            "attrs": {
                "spiffe_id": f"spiffe://meshwarden.local/agent/{a}",
                "team": team_of[a],
                "tier": rng.randint(1, 3),
            },
            "parents": [{"type": "Team", "id": team_of[a]}],
        }
        for a in AGENTS
    ]
    entities += [
        {
            "uid": {"type": "Capability", "id": c},
            "attrs": {
                "owner": rng.choice(TEAMS),
                "risk_tier": rng.randint(1, 3),
                "side_effects": rng.random() < 0.5,
                "kind": "tool",
            },
            "parents": [{"type": "Toolset", "id": rng.choice(TOOLSETS)}],
        }
        for c in CAPABILITIES
    ]
    return {
        "schema.cedarschema": SCHEMA,
        "entities.json": json.dumps(entities),
        "policies/baseline.cedar": None,
        "policies/tiers.cedar": None,
        "policies/refunds.cedar": None,
        "policies/random.cedar": "\n".join(policies) + "\n",
    }


def random_args(rng: random.Random) -> dict[str, object]:
    args: dict[str, object] = {}
    if rng.random() < 0.6:
        args["amount"] = rng.choice([5, 99, 100, 5000])
    if rng.random() < 0.4:
        args["flag"] = rng.random() < 0.5
    if rng.random() < 0.4:
        args["tags"] = rng.sample(["x", "y", "z"], rng.randint(0, 3))
    if rng.random() < 0.4:
        customer: dict[str, object] = {"id": rng.choice(["C1", "C2"])}
        if rng.random() < 0.5:
            customer["tier"] = rng.randint(1, 3)
        args["customer"] = customer
    return args


def random_facts(rng: random.Random) -> CallFacts:
    return CallFacts(
        now_unix_s=1_763_700_000 + rng.randint(0, 7 * 86400),
        session_id=rng.choice(["", "s-1"]),
        workflow_id=rng.choice(["", "w-1"]),
        cost_estimate_micro_usd=rng.choice([None, 10, 1000]),
    )


class PlainCedar:
    """The reference: cedarpy on the whole bundle text with the whole context, and the same
    fail-closed rule for forbids that cannot be evaluated."""

    def __init__(self, bundle: VerifiedBundle) -> None:
        self._text = "\n".join(f.text for f in bundle.contents.policy_files)
        self._entities = bundle.contents.entities_text
        tree = cedarpy.PolicySet.from_str(self._text).to_pst().static_policies
        self._ids = {pid: p.annotations["id"] for pid, p in tree.items()}
        self._forbids = {p.annotations["id"] for p in tree.values() if p.effect == "forbid"}

    def decide(
        self, caller: str, capability: str, args: dict[str, object], facts: CallFacts
    ) -> tuple[bool, tuple[str, ...]]:
        import time

        moment = time.gmtime(facts.now_unix_s)
        context: dict[str, object] = {
            "args": args,
            "session_id": facts.session_id,
            "workflow_id": facts.workflow_id,
            "time": {"unix": facts.now_unix_s, "hour": moment.tm_hour, "weekday": moment.tm_wday + 1},
        }
        if facts.cost_estimate_micro_usd is not None:
            context["cost_estimate_micro_usd"] = facts.cost_estimate_micro_usd
        request = {
            "principal": f'Agent::"{caller}"',
            "action": 'Action::"call"',
            "resource": f'Capability::"{capability}"',
            "context": context,
        }
        result = cedarpy.is_authorized(request, self._text, self._entities)
        errored = {
            self._ids[e.split("`")[1]]
            for e in result.diagnostics.errors
            if e.startswith("error while evaluating policy `")
        }
        blocking = tuple(sorted(errored & self._forbids))
        if result.allowed and blocking:
            return False, blocking
        return result.allowed, tuple(sorted(self._ids[r] for r in result.diagnostics.reasons))


@pytest.mark.parametrize("seed", range(12))
def test_every_slicing_decides_as_the_whole_bundle_and_plain_cedar(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    bundle = verified(tmp_path, random_files(rng, count=rng.randint(15, 40)))
    local = rng.choice(AGENTS)
    local_capabilities = rng.sample(CAPABILITIES, 2)
    engines = {
        "scope+cache": ActivePolicy(bundle, local_agent=local, local_capabilities=local_capabilities),
        "scope": ActivePolicy(bundle, local_agent=local, local_capabilities=local_capabilities, decision_cache_size=0),
        "agent": ActivePolicy(
            bundle,
            local_agent=local,
            local_capabilities=local_capabilities,
            slicing=Slicing.AGENT,
            decision_cache_size=0,
        ),
        "none": ActivePolicy(
            bundle,
            local_agent=local,
            local_capabilities=local_capabilities,
            slicing=Slicing.NONE,
            decision_cache_size=0,
        ),
    }
    plain = PlainCedar(bundle)
    outcomes: set[tuple[bool, tuple[str, ...]]] = set()
    for _ in range(150):
        direction = rng.choice(list(Direction))
        caller = local if direction is Direction.OUTBOUND else rng.choice([*AGENTS, "ghost", "nobody"])
        capability = (
            rng.choice([*CAPABILITIES, "phantom.op", "other.op"])
            if direction is Direction.OUTBOUND
            else rng.choice(local_capabilities)
        )
        if rng.random() < 0.1:  # calls outside the agent's slice still decide correctly
            caller, capability = rng.choice([*AGENTS, "ghost"]), rng.choice([*CAPABILITIES, "phantom.op"])
        args, facts = random_args(rng), random_facts(rng)
        decisions: dict[str, Decision] = {
            name: engine.decide(direction, Caller(caller), capability, json.dumps(args).encode(), facts)
            for name, engine in engines.items()
        }
        assert len(set(decisions.values())) == 1, (caller, capability, args, facts, decisions)
        decision = decisions["none"]
        assert (decision.allowed, decision.policy_ids) == plain.decide(caller, capability, args, facts), (
            caller,
            capability,
            args,
        )
        outcomes.add((decision.allowed, decision.policy_ids))
    assert len(outcomes) >= 3  # the sample saw several answers and deciding policies, not one answer repeated
