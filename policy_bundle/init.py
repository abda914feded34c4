"""`meshwarden bundle init DIR`: a starting bundle for the demo mesh, commented, that builds.

Agents kb, billing, support and frontdesk and capabilities kb.search, billing.refund and
support.resolve_ticket are the ones meshwarden/demo runs. The policies show the two rules
platform teams ask for first: a privilege-tier guard and a limit on refunds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from meshwarden.identity.spiffe_ids import DEFAULT_TRUST_DOMAIN, agent_id

MANIFEST: Final = """\
# The bundle's identity. `revision` must grow with every release you sign: sidecars refuse a
# bundle whose revision is not newer than the one they run (no rollback).
name = "demo"
revision = 1
description = "Starting policy for the meshwarden support-desk demo"

[settings]
# Receipts record a digest of each call's arguments; set this to also keep the arguments
# themselves (they may carry personal data).
store_raw_arguments = false
# There is deliberately no setting to allow calls no policy permits: the mesh denies them.
"""

SCHEMA: Final = """\
// The Cedar schema of this bundle: what policies may talk about. Policies are checked
// against it when the bundle is built. See policy_bundle/README.md for the model.

// Teams group agents: `principal in Team::"finance"`.
entity Team;

// Agent::"<agent name>", the caller. The sidecar names it from the caller's SPIFFE ID.
entity Agent in [Team] {
  spiffe_id: String,  // spiffe://<trust domain>/agent/<name>
  team: String,       // the same team as the Team parent, handy in conditions
  tier: Long,         // privilege tier: 1 = least trusted (customer-facing) ... 3 = most
};

// Capability::"<capability name>", what is called: an agent's capability or a tool.
entity Capability {
  owner: String,       // the team that owns it
  risk_tier: Long,     // 1 = reads only ... 3 = moves money or deletes data
  side_effects: Bool,
  kind: String,        // "capability" or "tool"
};

action "call" appliesTo {
  principal: [Agent],
  resource: [Capability],
  context: {
    // The call's JSON arguments. Declare the ones policies read (optional, with `?`, since
    // each capability has its own): integers are Long; Cedar has no floats or null.
    args: {
      amount_cents?: Long,
      customer_id?: String,
      query?: String,
    },
    session_id: String,   // "" when the caller gave none
    workflow_id: String,  // "" when the caller gave none
    time: { unix: Long, hour: Long, weekday: Long },  // UTC; weekday 1 = Monday ... 7 = Sunday
    cost_estimate_micro_usd?: Long,  // the caller's declared estimate, in millionths of a dollar
  },
};

// Model::"<model name>", a model of models.json, called through the sidecar's model gateway.
// The sidecar makes these entities from models.json; prices in millionths of a dollar per
// million tokens.
entity Model {
  provider: String,
  tier: String,
  context_tokens: Long,
  input_micro_usd_per_mtok: Long,
  output_micro_usd_per_mtok: Long,
};

action "CallModel" appliesTo {
  principal: [Agent],
  resource: [Model],
  context: {
    session_id: String,              // "" when the client sent no x-meshwarden-session-id
    workflow_id: String,
    team: String,                    // the calling agent's team
    estimated_input_tokens: Long,
    max_output_tokens: Long,         // the client's cap, or the model's default_max_tokens
    cost_estimate_micro_usd: Long,   // worst case: estimated input plus the output cap, at catalog prices
  },
};
"""

MODELS_POLICY: Final = """\
// Model calls through the sidecar's model gateway (models.json). Default deny applies too:
// a model no policy permits is refused.
@id("models-within-call-cost")
@reason("a model call may cost at most 50 cents in the worst case; lower max_tokens, or use a smaller model")
permit (principal, action == Action::"CallModel", resource)
when { context.cost_estimate_micro_usd <= 500000 };

@id("tier1-small-models-only")
@reason("customer-facing agents (tier 1) may call only models of tier small; hand the work to an agent of a higher tier")
forbid (principal, action == Action::"CallModel", resource)
when { principal.tier == 1 && resource.tier != "small" };
"""

BASELINE: Final = """\
// Everyday calls: anything that cannot move money or delete data.
// Everything no policy permits is denied; forbid policies override permits.
@id("low-and-medium-risk")
@reason("calls to capabilities of risk tier 1 or 2 are allowed to every known agent")
permit (principal, action == Action::"call", resource)
when { resource.risk_tier <= 2 };
"""

TIERS: Final = """\
// Customer-facing agents (tier 1) never reach high-risk tools directly.
@id("tier1-no-risk3")
@reason("agents of tier 1 may not call tools of risk tier 3; go through an agent of a higher tier (support), or ask the platform team to review this agent's tier")
forbid (principal, action == Action::"call", resource)
when { principal.tier == 1 && resource.risk_tier == 3 };
"""

REFUNDS: Final = """\
// Support and finance may issue refunds...
@id("refunds-by-support")
@reason("support agents issue refunds")
permit (
  principal in Team::"support",
  action == Action::"call",
  resource == Capability::"billing.refund"
);

@id("refunds-by-finance")
@reason("finance agents issue refunds")
permit (
  principal in Team::"finance",
  action == Action::"call",
  resource == Capability::"billing.refund"
);

// ...but only finance may refund 100 dollars or more. Amounts are integer cents: Cedar has no
// floating-point numbers, and a call with a fractional amount is refused before it gets here.
@id("refunds-under-100-dollars")
@reason("refunds of 100 dollars (10000 cents) or more need an agent of team finance; hand the ticket to billing")
forbid (principal, action == Action::"call", resource == Capability::"billing.refund")
unless {
  (context.args has amount_cents && context.args.amount_cents < 10000) ||
  principal in Team::"finance"
};
"""

_AGENTS: Final = (
    ("kb", "knowledge", 2),
    ("billing", "finance", 3),
    ("support", "support", 2),
    ("frontdesk", "support", 1),
)
_CAPABILITIES: Final = (
    ("kb.search", "knowledge", 1, False, "tool"),
    ("support.resolve_ticket", "support", 2, True, "capability"),
    ("billing.refund", "finance", 3, True, "tool"),
)

README: Final = """\
# Policy bundle `demo`

Build, sign and check it:

    meshwarden bundle build . -o demo.bundle.json
    meshwarden bundle keygen --key-id platform-1 --out-dir ~/.meshwarden/keys
    meshwarden bundle sign demo.bundle.json --key ~/.meshwarden/keys/platform-1.key --key-id platform-1
    meshwarden bundle verify demo.bundle.json --trusted-key platform-1=$HOME/.meshwarden/keys/platform-1.pub

- `manifest.toml`: name, revision (raise it for every release), settings.
- `schema.cedarschema`: entity types and the call context.
- `policies/*.cedar`: one or more policies each, every one with a unique `@id`.
- `entities.json` (Cedar entity JSON): agents with team and tier, capabilities with owner,
  risk tier, side effects and kind. An agent missing here is still evaluated, without
  attributes: policies reading its attributes cannot permit it, and a forbid that cannot be
  evaluated denies.

Only these files go into the bundle; this README does not.
"""


def entities_json(trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
    teams = sorted({team for _, team, _ in _AGENTS} | {owner for _, owner, _, _, _ in _CAPABILITIES})
    entities: list[dict[str, object]] = [{"uid": {"type": "Team", "id": t}, "attrs": {}, "parents": []} for t in teams]
    entities += [
        {
            "uid": {"type": "Agent", "id": name},
            "attrs": {"spiffe_id": agent_id(trust_domain, name), "team": team, "tier": tier},
            "parents": [{"type": "Team", "id": team}],
        }
        for name, team, tier in _AGENTS
    ]
    entities += [
        {
            "uid": {"type": "Capability", "id": name},
            "attrs": {"owner": owner, "risk_tier": risk, "side_effects": side_effects, "kind": kind},
            "parents": [],
        }
        for name, owner, risk, side_effects, kind in _CAPABILITIES
    ]
    return json.dumps(entities, indent=2) + "\n"


def models_json(
    openai_base_url: str = "https://api.openai.com/v1",
    anthropic_base_url: str = "https://api.anthropic.com",
    openai_credential: dict[str, str] | None = None,
    anthropic_credential: dict[str, str] | None = None,
) -> str:
    """A models.json with two providers and three models at list prices (micro-USD per million
    tokens); the sidecar reads each provider's key from the credential named here."""
    catalog = {
        "providers": {
            "openai": {
                "api": "openai",
                "base_url": openai_base_url,
                "credential": openai_credential or {"env": "OPENAI_API_KEY"},
            },
            "anthropic": {
                "api": "anthropic",
                "base_url": anthropic_base_url,
                "credential": anthropic_credential or {"env": "ANTHROPIC_API_KEY"},
            },
        },
        "models": {
            "gpt-4o-mini": {
                "provider": "openai",
                "tier": "small",
                "context_tokens": 128000,
                "default_max_tokens": 1024,
                "max_output_tokens": 16384,
                "price_micro_usd_per_mtok": {"input": 150000, "output": 600000, "cached_input": 75000},
            },
            "gpt-4o": {
                "provider": "openai",
                "tier": "large",
                "context_tokens": 128000,
                "default_max_tokens": 1024,
                "max_output_tokens": 16384,
                "price_micro_usd_per_mtok": {"input": 2500000, "output": 10000000, "cached_input": 1250000},
                "fallbacks": ["gpt-4o-mini"],
            },
            "claude-haiku-4-5": {
                "provider": "anthropic",
                "tier": "small",
                "context_tokens": 200000,
                "default_max_tokens": 1024,
                "max_output_tokens": 8192,
                "price_micro_usd_per_mtok": {"input": 1000000, "output": 5000000, "cached_input": 100000},
            },
        },
    }
    return json.dumps(catalog, indent=2) + "\n"


def model_files(catalog: str | None = None) -> dict[str, str]:
    """What `bundle init --models` adds: a models.json and the policies on model calls."""
    return {"models.json": catalog or models_json(), "policies/models.cedar": MODELS_POLICY}


def starting_files() -> dict[str, str]:
    """Relative path -> text of the starting bundle."""
    return {
        "manifest.toml": MANIFEST,
        "schema.cedarschema": SCHEMA,
        "entities.json": entities_json(),
        "policies/baseline.cedar": BASELINE,
        "policies/tiers.cedar": TIERS,
        "policies/refunds.cedar": REFUNDS,
        "README.md": README,
    }


class DirectoryNotEmpty(Exception):
    def __init__(self, directory: Path) -> None:
        super().__init__(
            f"{directory} exists and is not empty; init writes a new bundle into an empty or new directory"
        )


def init(directory: Path, models: bool = False) -> list[Path]:
    """Writes the starting bundle into `directory` (new or empty), with `model_files()` when
    `models`; returns the files written."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise DirectoryNotEmpty(directory)
    written: list[Path] = []
    for relative, text in (starting_files() | (model_files() if models else {})).items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
