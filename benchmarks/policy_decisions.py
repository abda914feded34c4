"""Policy decision latency with a realistic 1,000-policy Cedar bundle.

    PYTHONPATH=. .venv/bin/python benchmarks/policy_decisions.py [--policies 1000]
        [--decisions 10000] [--rounds 10] [--reparse-decisions 200] [--seed 7] [--output table|json]

Generates a bundle for a mesh of 40 teams, 400 agents and 300 capabilities in 30 toolsets:
a few global guardrails (tiers, cost, weekends), team grants to toolsets and capabilities,
per-agent grants with argument limits, and per-capability forbids. It builds, signs,
verifies and activates it for one local agent, then decides the same random calls (the
agent's own outbound calls, and inbound calls from random agents, a tenth of them unknown to
the bundle, to the agent's capabilities) several ways:

  scope     ActivePolicy with its decision cache off: per (caller, capability), only the
            policies whose scope matches and that are not false for the pair whatever the call
  cached    the same with the decision cache on (as a sidecar runs it): a repeat of a pair with
            the same context Cedar sees (the few fields its policies read) skips Cedar
  agent     ActivePolicy given the local agent's slice (outbound: principal scope matches
            the agent; inbound: resource scope matches one of its capabilities)
  none      ActivePolicy given every policy (parsed once)
  reparse   cedarpy.is_authorized with the policy text, entity JSON and full context, parsed
            on every call: the naive way, for scale

Every mode must reach the same decisions (checked on every request); the script exits 1 if
they do not. Latency is wall time per decide() call (perf_counter_ns), after a warm-up of
500 requests per direction; the modes take turns in rounds.

One file, over 300 lines: a script run by path; the bundle generator, the load and the
figures serve only this run, in the order of a run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

try:
    import cedarpy

    from meshwarden.policy_bundle import build, keygen, load_private_key, load_public_key, sign, verify
    from meshwarden.policy_bundle.verify import VerifiedBundle
    from meshwarden.sidecar.policy import ActivePolicy, Caller, CallFacts, Decision, Direction, Slicing
    from meshwarden.sidecar.policy.active_policy import DEFAULT_DECISION_CACHE
except ModuleNotFoundError as exc:  # run from a checkout without PYTHONPATH
    sys.exit(
        f"policy_decisions.py: cannot import {exc.name}; run it with the project's venv and PYTHONPATH=<repo root>"
    )

TEAMS, AGENTS_PER_TEAM, CAPABILITIES, TOOLSETS = 40, 10, 300, 30
NOW_UNIX_S = 1_763_700_000  # a Friday, 04:40 UTC

SCHEMA = """\
entity Team;
entity Toolset;
entity Agent in [Team] { spiffe_id: String, team: String, tier: Long };
entity Capability in [Toolset] { owner: String, risk_tier: Long, side_effects: Bool, kind: String };
action "call" appliesTo {
  principal: [Agent],
  resource: [Capability],
  context: {
    args: { amount_cents?: Long, customer_id?: String, query?: String, limit?: Long, region?: String },
    session_id: String,
    workflow_id: String,
    time: { unix: Long, hour: Long, weekday: Long },
    cost_estimate_micro_usd?: Long,
  },
};
"""


@dataclass(frozen=True)
class Mesh:
    agents: list[str]
    team_of: dict[str, str]
    capabilities: list[str]


@dataclass(frozen=True)
class Request:
    direction: Direction
    caller: str
    capability: str
    args_json: bytes


@dataclass(frozen=True)
class Figures:
    mode: str
    direction: str
    decisions: int
    policies_seen_mean: float
    p50_us: float
    p99_us: float
    mean_us: float


def generate_bundle(directory: Path, policies: int, rng: random.Random) -> Mesh:
    teams = [f"team{t:02d}" for t in range(TEAMS)]
    agents = [f"agent-{t:02d}-{a}" for t in range(TEAMS) for a in range(AGENTS_PER_TEAM)]
    team_of = {agent: teams[int(agent.split("-")[1])] for agent in agents}
    capabilities = [f"svc{c // 10:02d}.op{c % 10}" for c in range(CAPABILITIES)]
    toolset_of = {c: f"toolset{i % TOOLSETS:02d}" for i, c in enumerate(capabilities)}
    entities: list[dict[str, object]] = [{"uid": {"type": "Team", "id": t}, "attrs": {}, "parents": []} for t in teams]
    entities += [
        {"uid": {"type": "Toolset", "id": s}, "attrs": {}, "parents": []} for s in sorted(set(toolset_of.values()))
    ]
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
        for a in agents
    ]
    entities += [
        {
            "uid": {"type": "Capability", "id": c},
            "attrs": {
                "owner": rng.choice(teams),
                "risk_tier": rng.randint(1, 3),
                "side_effects": rng.random() < 0.5,
                "kind": rng.choice(["capability", "tool"]),
            },
            "parents": [{"type": "Toolset", "id": toolset_of[c]}],
        }
        for c in capabilities
    ]
    texts = _policies(policies, rng, teams, agents, capabilities, sorted(set(toolset_of.values())))
    (directory / "policies").mkdir(parents=True)
    (directory / "manifest.toml").write_text('name = "bench"\nrevision = 1\n')
    (directory / "schema.cedarschema").write_text(SCHEMA)
    (directory / "entities.json").write_text(json.dumps(entities, indent=1))
    for start in range(0, len(texts), 100):  # ten files of a hundred policies
        (directory / "policies" / f"p{start // 100:02d}.cedar").write_text("\n".join(texts[start : start + 100]) + "\n")
    return Mesh(agents, team_of, capabilities)


def _policies(
    count: int, rng: random.Random, teams: list[str], agents: list[str], caps: list[str], toolsets: list[str]
) -> list[str]:
    call = 'action == Action::"call"'
    guardrails = [
        f"forbid(principal, {call}, resource) when {{ principal.tier == 1 && resource.risk_tier == 3 }};",
        f"forbid(principal, {call}, resource) when {{ context has cost_estimate_micro_usd && context.cost_estimate_micro_usd > 5000000 && principal.tier < 3 }};",
        f"forbid(principal, {call}, resource) when {{ resource.risk_tier == 3 && (context.time.weekday == 6 || context.time.weekday == 7) }};",
        f'forbid(principal, {call}, resource) when {{ resource.side_effects && context.session_id == "" && principal.tier == 1 }};',
        f'permit(principal, {call}, resource) when {{ resource.risk_tier == 1 && resource.kind == "tool" }};',
        f'forbid(principal, {call}, resource) when {{ context.args has region && context.args.region == "embargoed" }};',
    ]
    texts = [f'@id("guard-{i}")\n@reason("global guardrail {i}")\n{text}' for i, text in enumerate(guardrails)]
    while len(texts) < count:
        i, kind = len(texts), rng.random()
        if kind < 0.30:  # team grants on one capability
            body = f'permit(principal in Team::"{rng.choice(teams)}", {call}, resource == Capability::"{rng.choice(caps)}");'
        elif kind < 0.45:  # team grants on a toolset
            body = f'permit(principal in Team::"{rng.choice(teams)}", {call}, resource in Toolset::"{rng.choice(toolsets)}") when {{ resource.risk_tier <= principal.tier }};'
        elif kind < 0.80:  # per-agent grants with an argument limit
            limit = rng.choice([1000, 10000, 100000])
            body = (
                f'permit(principal == Agent::"{rng.choice(agents)}", {call}, resource == Capability::"{rng.choice(caps)}") '
                f"when {{ context.args has amount_cents && context.args.amount_cents < {limit} }};"
            )
        else:  # per-capability forbids on arguments
            body = (
                f'forbid(principal, {call}, resource == Capability::"{rng.choice(caps)}") '
                f"when {{ context.args has limit && context.args.limit > {rng.choice([10, 50, 100])} }};"
            )
        texts.append(f'@id("p{i:04d}")\n{body}')
    return texts


def requests(mesh: Mesh, local: str, local_caps: Sequence[str], count: int, rng: random.Random) -> list[Request]:
    found: list[Request] = []
    for _ in range(count):
        args = json.dumps(
            {
                "amount_cents": rng.choice([500, 5000, 50000]),
                "limit": rng.choice([5, 20, 200]),
                "query": "refund policy",
                "customer_id": "C42",
            }
        ).encode()
        if rng.random() < 0.5:
            found.append(Request(Direction.OUTBOUND, local, rng.choice(mesh.capabilities), args))
        else:
            caller = rng.choice(mesh.agents) if rng.random() < 0.9 else f"stranger-{rng.randint(0, 999)}"
            found.append(Request(Direction.INBOUND, caller, rng.choice(local_caps), args))
    return found


def measure(
    decide: Callable[[Request], Decision], sample: Sequence[Request], warmup: int
) -> tuple[list[float], list[Decision]]:
    for request in sample[:warmup]:
        decide(request)
    timings: list[float] = []
    decisions: list[Decision] = []
    for request in sample:
        start = time.perf_counter_ns()
        decisions.append(decide(request))
        timings.append((time.perf_counter_ns() - start) / 1000)
    return timings, decisions


def measure_interleaved(
    engines: dict[str, ActivePolicy], sample: Sequence[Request], facts: CallFacts, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[Decision]]]:
    """Each mode decides the same requests; the modes take turns, a slice of the sample at a
    time, so a noisy neighbour on the machine slows all of them alike."""
    timings: dict[str, list[float]] = {mode: [] for mode in engines}
    decisions: dict[str, list[Decision]] = {mode: [] for mode in engines}
    step = max(1, len(sample) // max(1, rounds))
    callers = [Caller(r.caller) for r in sample]
    for start in range(0, len(sample), step):
        for mode, engine in engines.items():
            for request, caller in zip(sample[start : start + step], callers[start : start + step], strict=True):
                began = time.perf_counter_ns()
                decision = engine.decide(request.direction, caller, request.capability, request.args_json, facts)
                timings[mode].append((time.perf_counter_ns() - began) / 1000)
                decisions[mode].append(decision)
    return timings, decisions


def figures(mode: str, direction: Direction, timings: list[float], seen: list[int]) -> Figures:
    ordered = sorted(timings)
    return Figures(
        mode=mode,
        direction=direction.value,
        decisions=len(ordered),
        policies_seen_mean=round(statistics.fmean(seen), 1),
        p50_us=round(ordered[len(ordered) // 2], 1),
        p99_us=round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        mean_us=round(statistics.fmean(ordered), 1),
    )


def reparse_decider(bundle: VerifiedBundle) -> Callable[[Request], Decision]:
    """The naive engine: everything parsed on every call, Cedar's string uids, full context.
    It applies the same fail-closed rule as ActivePolicy (an errored forbid denies), so the
    decisions can be compared."""
    text = "\n".join(f.text for f in bundle.contents.policy_files)
    entities = bundle.contents.entities_text
    forbids = {
        pid for pid, p in cedarpy.PolicySet.from_str(text).to_pst().static_policies.items() if p.effect == "forbid"
    }

    def decide(request: Request) -> Decision:
        context = {
            "args": json.loads(request.args_json),
            "session_id": "s-1",
            "workflow_id": "",
            "time": {"unix": NOW_UNIX_S, "hour": 4, "weekday": 5},
        }
        result = cedarpy.is_authorized(
            {
                "principal": f'Agent::"{request.caller}"',
                "action": 'Action::"call"',
                "resource": f'Capability::"{request.capability}"',
                "context": context,
            },
            text,
            entities,
        )
        errored = {
            e.split("`")[1] for e in result.diagnostics.errors if e.startswith("error while evaluating policy `")
        }
        return Decision(result.allowed and not errored & forbids, (), "")

    return decide


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "cedarpy": _version("cedarpy"),
        "date": datetime.date.today().isoformat(),
    }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--decisions", type=int, default=10000, help="requests, half outbound (default 10000)")
    parser.add_argument("--reparse-decisions", type=int, default=200, help="requests for the slow reparse mode")
    parser.add_argument("--rounds", type=int, default=10, help="modes take turns in this many rounds (default 10)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", choices=["table", "json"], default="table")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "bundle"
        mesh = generate_bundle(source, args.policies, rng)
        started = time.perf_counter()
        built = build(source)
        build_s = time.perf_counter() - started
        keys = keygen(Path(work) / "keys", "bench")
        raw = sign(built.to_bytes(), load_private_key(keys.private_key), "bench")
        bundle = verify(raw, {"bench": load_public_key(keys.public_key)})

    local = mesh.agents[len(mesh.agents) // 3]
    local_caps = mesh.capabilities[:3]
    engines: dict[str, ActivePolicy] = {}
    activation_ms: dict[str, float] = {}
    for mode, slicing, cache in (
        ("scope", Slicing.SCOPE, 0),
        ("cached", Slicing.SCOPE, DEFAULT_DECISION_CACHE),
        ("agent", Slicing.AGENT, 0),
        ("none", Slicing.NONE, 0),
    ):
        started = time.perf_counter()
        engines[mode] = ActivePolicy(
            bundle, local_agent=local, local_capabilities=local_caps, slicing=slicing, decision_cache_size=cache
        )
        activation_ms[mode] = round((time.perf_counter() - started) * 1000, 1)
    facts = CallFacts(now_unix_s=NOW_UNIX_S, session_id="s-1")
    sample = requests(mesh, local, local_caps, args.decisions, rng)

    results: list[Figures] = []
    mismatches = 0
    cache_hit_rate: dict[str, float] = {}
    for direction in Direction:
        chosen = [r for r in sample if r.direction is direction]
        for request in chosen[: min(500, len(chosen))]:  # warm-up, unmeasured
            for engine in engines.values():
                engine.decide(request.direction, Caller(request.caller), request.capability, request.args_json, facts)
        cached_before = engines["cached"].decision_cache_entries
        timings, decisions = measure_interleaved(engines, chosen, facts, args.rounds)
        misses = engines["cached"].decision_cache_entries - cached_before
        cache_hit_rate[direction.value] = round(1 - misses / len(chosen), 3)
        for mode, engine in engines.items():
            seen = [engine.slice_size(r.direction, r.caller, r.capability) for r in chosen]
            results.append(figures(mode, direction, timings[mode], seen))
            mismatches += sum(
                (a.allowed, a.policy_ids) != (b.allowed, b.policy_ids)
                for a, b in zip(decisions[mode], decisions["none"], strict=True)
            )
        few = chosen[: args.reparse_decisions]
        reparse_timings, reparsed = measure(reparse_decider(bundle), few, warmup=10)
        mismatches += sum(a.allowed != b.allowed for a, b in zip(reparsed, decisions["none"], strict=False))
        results.append(figures("reparse", direction, reparse_timings, [engines["none"].policy_count] * len(few)))

    bundle_facts: dict[str, object] = {
        "policies": engines["none"].policy_count,
        "agents": len(mesh.agents),
        "capabilities": len(mesh.capabilities),
        "local_agent": local,
        "local_capabilities": list(local_caps),
        "build_s": round(build_s, 2),
        "activation_ms": activation_ms,
        "outbound_slice": engines["agent"].slice_size(Direction.OUTBOUND, local, mesh.capabilities[-1]),
        "inbound_slice": engines["agent"].slice_size(Direction.INBOUND, mesh.agents[0], local_caps[0]),
        "cache_hit_rate": cache_hit_rate,
    }
    if args.output == "json":
        report = {
            "machine": machine(),
            "bundle": bundle_facts,
            "figures": [asdict(f) for f in results],
            "decisions_disagreeing": mismatches,
        }
        print(json.dumps(report, indent=2))
    else:
        print(render(bundle_facts, machine(), results, mismatches))
    return 1 if mismatches else 0


def render(bundle: dict[str, object], machine_facts: dict[str, str], rows: list[Figures], disagreeing: int) -> str:
    lines = [
        f"machine: {machine_facts}",
        f"bundle: {bundle}",
        "",
        f"{'mode':8} {'direction':9} {'decisions':>9} {'policies seen':>13} {'p50 µs':>9} {'p99 µs':>9} {'mean µs':>9}",
    ]
    for row in rows:
        lines.append(
            f"{row.mode:8} {row.direction:9} {row.decisions:>9} {row.policies_seen_mean:>13} "
            f"{row.p50_us:>9} {row.p99_us:>9} {row.mean_us:>9}"
        )
    lines.append(f"\ndecisions disagreeing between modes: {disagreeing}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
