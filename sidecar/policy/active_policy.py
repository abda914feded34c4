"""ActivePolicy: one verified bundle revision, ready to decide calls for one local agent.

Built once per revision (docs/STYLE.md §6, step 3) and swapped in whole; deciding never parses
policies, schema or entities. What a decision costs with cedarpy 4.12, and what is done
about it (benchmarks/README.md has the figures):

- Cedar evaluates every policy in the set it is given, about 0.8 µs each, whether or not
  its scope matches. So each (caller, capability) pair gets its own policy set: only the
  policies whose scope matches the pair (exact, see scopes.py), less those that read no
  context and are false for the pair (pruning.py). With a 1,000-policy bundle a pair sees a
  handful. The sets of every pair this agent can be part of are built here, and shared
  between pairs that see the same policies; a pair no one foresaw (a name neither entities
  nor scopes mention) gets its set on first use, from a memo bounded by the bundle.
- Cedar parses the request context from JSON on every call, 1.5-2 µs per value. So only
  the context the pair's policies read is built (reads.py), and the arguments are parsed
  only if some applicable policy reads them.
- Principal, action and resource go to cedarpy as {"type", "id"} records; its string form
  ('Agent::"kb"') goes through the policy parser, about 15 µs more.
- Entities are parsed once, into one cedarpy.Entities handle; passing it costs nothing per
  entity.
- Cedar is deterministic, so a pair whose policies read no context has one decision, kept
  after its first call, and any other decision is kept (first in, first out, bounded) under
  the exact context string Cedar saw: a repeat skips Cedar.

Fail-closed rules on top of Cedar's: a forbid policy that errors during evaluation (an
agent missing from entities.json has no attributes to read) denies the call rather than
being skipped (outcome.py), and a caller whose SPIFFE ID differs from the one entities.json
pins for its agent name is denied.

Over 300 lines: preparing the pairs and deciding share the same state, and what stands on
its own (scopes, reads, pruning, values, outcomes) is already in its own module.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Final, TypeVar

import cedarpy
from cedarpy import pst

from meshwarden.policy_bundle.approval_rules import ApprovalRule, approval_rule
from meshwarden.policy_bundle.cedar_source import split_statements
from meshwarden.policy_bundle.errors import BundleError
from meshwarden.policy_bundle.mcp_servers import McpServers, ToolDecl
from meshwarden.policy_bundle.model import (
    AGENT_TYPE,
    ARGS,
    CALL_ACTION,
    CAPABILITY_TYPE,
    CONTEXT_FIELDS,
    COST_ESTIMATE,
    SESSION_ID,
    TIME,
    WORKFLOW_ID,
)
from meshwarden.policy_bundle.model_catalog import EMPTY as EMPTY_CATALOG
from meshwarden.policy_bundle.model_catalog import parse_catalog
from meshwarden.policy_bundle.schema_shape import RecordOf, SchemaShapeError, read_call_action, read_schema
from meshwarden.policy_bundle.verify import VerifiedBundle
from meshwarden.sidecar.policy.cedar_values import (
    LONG_MAX,
    LONG_MIN,
    ArgumentsNotMappable,
    ArgumentsSource,
    arguments_of,
    project,
)
from meshwarden.sidecar.policy.decision import Caller, CallFacts, Decision, Direction
from meshwarden.sidecar.policy.model_policy import ModelPolicy, ModelRule
from meshwarden.sidecar.policy.outcome import Outcomes
from meshwarden.sidecar.policy.pruning import context_free_probe, prune_false_for_pair
from meshwarden.sidecar.policy.reads import EVERYTHING, Reads, context_reads
from meshwarden.sidecar.policy.scopes import Hierarchy, ScopeIndex, action_may_match
from meshwarden.sidecar.policy.tool_policy import ToolPolicy

_ACTION: Final = {"type": "Action", "id": CALL_ACTION}
_Pair = tuple[Direction, str, str]  # (direction, caller agent, capability)
ParsedFiles = Mapping[str, tuple[pst.Template, ...]]  # a policy file's text -> its policies, parsed
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))  # built once: json.dumps(separators=...) builds one per call
DEFAULT_DECISION_CACHE: Final = 4096
_PARSE_STEP_STATEMENTS: Final = 20  # about 2 ms of cedarpy parsing per step


_V = TypeVar("_V")


class Slicing(enum.Enum):
    """Which policies Cedar is given for a decision. Every choice decides the same; they
    differ in cost. SCOPE is what a sidecar runs; the others exist to measure and to check."""

    SCOPE = "scope"  # only the policies whose scope matches the (caller, capability) pair
    AGENT = "agent"  # the local agent's slice: outbound, its principal matches; inbound, a local capability matches
    NONE = "none"  # every policy in the bundle


@dataclass(frozen=True, slots=True)
class _Policy:
    policy_id: str
    effect: str  # "permit" | "forbid"
    reason: str  # its @reason, "" if it has none
    template: pst.Template


@dataclass(frozen=True, slots=True)
class _Evaluator:
    """What Cedar needs for the requests one set of policies decides."""

    policy_set: cedarpy.PolicySet | None  # None: no policy can apply, so default deny
    reads: Reads
    plan: tuple[tuple[str, Reads], ...]  # the context fields to build, with what is read of each
    forbids: frozenset[str]
    size: int


class ActivePolicy:
    """Immutable in what it decides. `decide` fills two memos (policy sets of unforeseen
    pairs, kept decisions) computed only from the revision and the call, so concurrent
    callers at worst compute an entry twice."""

    def __init__(
        self,
        bundle: VerifiedBundle,
        *,
        local_agent: str,
        local_capabilities: Collection[str],
        slicing: Slicing = Slicing.SCOPE,
        decision_cache_size: int = DEFAULT_DECISION_CACHE,
        parsed: ParsedFiles | None = None,
    ) -> None:
        """`parsed`: the `parsed_files` of the policy this one replaces; a policy file whose
        text is the same is not parsed again (its templates are immutable, so they are shared)."""
        contents = bundle.contents
        self.label = contents.manifest.label
        self.name, self.revision, self.digest = contents.manifest.name, contents.manifest.revision, bundle.digest
        self.local_agent, self.slicing = local_agent, slicing
        self._local_capabilities = frozenset(local_capabilities)
        try:
            schema = cedarpy.Schema.from_str(contents.schema_text, release_gil=True)
            self.parsed_files = _parse_policies([f.text for f in contents.policy_files], parsed or {})
            templates = [t for f in contents.policy_files for t in self.parsed_files[f.text]]
            self._entities = cedarpy.Entities.from_json_str(contents.entities_text, schema, release_gil=True)
            args_type = read_call_action(contents.schema_text).context.attributes.get(ARGS)
            shape = read_schema(contents.schema_text)
        except (ValueError, SchemaShapeError) as exc:
            raise BundleError(
                f"cannot be activated ({exc}); rebuild it with `meshwarden bundle build`", bundle=self.label
            ) from exc
        self._args_type = args_type.type if args_type and isinstance(args_type.type, RecordOf) else RecordOf({})
        self._policies = _policies(templates, self.label)
        approvals = _approval_rules(self._policies, self.label)
        self._outcomes = Outcomes(self.label, {p.policy_id: p.reason for p in self._policies}, approvals)
        # The model gateway's catalog and its CallModel decisions (model_policy.py).
        try:
            self.models = parse_catalog(contents.models_text) if contents.models_text else EMPTY_CATALOG
            self.model_policy = ModelPolicy(
                [ModelRule(p.policy_id, p.effect, p.reason, p.template) for p in self._policies],
                self.models,
                contents.entities_text,
                schema,
                self.label,
                approvals=approvals,
            )
        except (BundleError, ValueError) as exc:  # the catalog, or Cedar refusing the Model entities
            raise BundleError(
                f"cannot be activated: models.json ({exc}); rebuild it with `meshwarden bundle build`",
                bundle=self.label,
            ) from exc
        hierarchy = Hierarchy.from_entities_json(contents.entities_text)
        self._pinned_spiffe_ids = _pinned_spiffe_ids(contents.entities_text)
        self._teams = _teams(contents.entities_text)
        try:
            self._tools = ToolPolicy(
                label=self.label,
                schema=schema,
                shape=shape,
                entities=json.loads(contents.entities_text),
                templates={p.policy_id: p.template for p in self._policies},
                reasons={p.policy_id: p.reason for p in self._policies},
                servers=contents.mcp_servers,
                teams=self._teams,
                approvals=approvals,
                decision_cache_size=decision_cache_size,
            )
        except ValueError as exc:
            raise BundleError(
                f"cannot be activated: its MCP tools do not fit its schema ({exc}); rebuild it with "
                "`meshwarden bundle build`",
                bundle=self.label,
            ) from exc
        # Receipts keep the call's arguments, not only their digest, when the bundle says so.
        self.store_raw_arguments = contents.manifest.settings.store_raw_arguments
        self.approvers_see_arguments = contents.manifest.settings.approvers_see_arguments
        self._capability_kinds = _capability_kinds(contents.entities_text)
        self._principals = ScopeIndex(AGENT_TYPE, [p.template.principal for p in self._policies], hierarchy)
        self._resources = ScopeIndex(CAPABILITY_TYPE, [p.template.resource for p in self._policies], hierarchy)
        self._callable = frozenset(i for i, p in enumerate(self._policies) if action_may_match(p.template.action))
        self._outbound_slice = self._principals.matching(local_agent) & self._callable
        inbound: frozenset[int] = frozenset()
        for capability in self._local_capabilities:
            inbound |= self._resources.matching(capability)
        self._inbound_slice = inbound & self._callable
        self._evaluators: dict[frozenset[int], _Evaluator] = {}  # grows only to the bundle's distinct sets
        self._pairs = self._foreseen_pairs(_entity_names(contents.entities_text))
        # Decisions of foreseen pairs whose policies read no context: the same on every call.
        self._constant: dict[_Pair, Decision] = {}
        self._unforeseen: dict[_Pair, _Evaluator] = {}
        # Cedar is deterministic: the same pair with the same context (as built for Cedar)
        # gets the same decision. First in, first out beyond the bound; 0 turns it off.
        self._decisions: dict[tuple[_Pair, str], Decision] = {}
        self._decision_cache_size = decision_cache_size

    def decide(
        self, direction: Direction, caller: Caller, capability: str, args_json: ArgumentsSource, facts: CallFacts
    ) -> Decision:
        """Whether `caller` may call `capability` with these arguments, and why.

        Raises ArgumentsNotMappable when an argument some applicable policy reads cannot be
        given to Cedar as sent (a float, null, a type the schema does not declare); the
        message names its JSON path. The call should then be refused as a bad payload."""
        pinned = self._pinned_spiffe_ids.get(caller.agent)
        if pinned and caller.spiffe_id and caller.spiffe_id != pinned:
            return Decision(
                False,
                (),
                f"{self.label} gives agent {caller.agent} the SPIFFE ID {pinned}, but the caller presented "
                f"{caller.spiffe_id}; check the trust domain of spiffe_id in the bundle's entities.json",
            )
        key = (direction, caller.agent, capability)
        evaluator = self._pairs.get(key) or self._unforeseen.get(key)
        if evaluator is None:
            # A pair the bundle's entities do not name (a capability or agent it does not
            # describe): worked out once, then remembered within the cache bound.
            evaluator = self._evaluator(self._select(direction, caller.agent, capability))
            self._bounded_put(self._unforeseen, key, evaluator)
        if evaluator.policy_set is None:
            return self._outcomes.default_deny(caller.agent, capability)
        if not evaluator.reads.anything:
            constant = self._constant.get(key)
            if constant is None:
                constant = self._evaluate(evaluator, caller, capability, None)
                self._bounded_put(self._constant, key, constant)
            return constant
        try:
            context = self._context(evaluator.plan, args_json, facts)
        except ArgumentsNotMappable as exc:
            raise exc.for_bundle(self.label) from None
        cached = self._decisions.get((key, context))
        if cached is not None:
            return cached
        decision = self._evaluate(evaluator, caller, capability, context)
        if self._decision_cache_size:
            if len(self._decisions) >= self._decision_cache_size:
                self._decisions.pop(next(iter(self._decisions)), None)
            self._decisions[(key, context)] = decision
        return decision

    @property
    def mcp_servers(self) -> McpServers:
        """The MCP servers and tools this revision lets agents reach (mcp_servers.toml)."""
        return self._tools.servers

    def decide_tool(self, caller: Caller, tool: ToolDecl, args_json: ArgumentsSource, facts: CallFacts) -> Decision:
        """Whether `caller` may call the MCP tool with these arguments (Action::"CallTool"), and
        why. The arguments must already match the tool's input schema. Raises
        ArgumentsNotMappable as `decide` does."""
        pinned = self._pinned_spiffe_ids.get(caller.agent)
        if pinned and caller.spiffe_id and caller.spiffe_id != pinned:
            return Decision(
                False,
                (),
                f"{self.label} gives agent {caller.agent} the SPIFFE ID {pinned}, but the caller presented "
                f"{caller.spiffe_id}; check the trust domain of spiffe_id in the bundle's entities.json",
            )
        return self._tools.decide(caller.agent, tool, args_json, facts)

    def tool_visible(self, caller: Caller, tool: ToolDecl, facts: CallFacts) -> bool:
        """Whether the agent's tools/list shows this tool (see ToolPolicy.visible)."""
        pinned = self._pinned_spiffe_ids.get(caller.agent)
        if pinned and caller.spiffe_id and caller.spiffe_id != pinned:
            return False
        return self._tools.visible(caller.agent, tool, facts)

    def _bounded_put(self, cache: dict[_Pair, _V], key: _Pair, value: _V) -> None:
        """Foreseen pairs are few and fixed per revision; unforeseen ones come from callers, so
        what is remembered about them is bounded (first in, first out)."""
        if key not in self._pairs and len(cache) >= max(self._decision_cache_size, 1):
            cache.pop(next(iter(cache)), None)
        cache[key] = value

    def _evaluate(self, evaluator: _Evaluator, caller: Caller, capability: str, context: str | None) -> Decision:
        request = _request(caller.agent, capability)
        if context is not None:
            request["context"] = context
        if evaluator.policy_set is None:
            return self._outcomes.default_deny(caller.agent, capability)
        result = cedarpy.is_authorized(request, evaluator.policy_set, self._entities)
        return self._outcomes.decision(result, evaluator.forbids, caller.agent, capability)

    def team_of(self, agent: str) -> str:
        """The `team` attribute of the agent's entity in this bundle; "" when it has none."""
        return self._teams.get(agent, "")

    def capability_kind(self, capability: str) -> str:
        """The bundle's `kind` of a capability ("capability" or "tool"); "" when it names none."""
        return self._capability_kinds.get(capability, "")

    def slice_size(self, direction: Direction, caller: str, capability: str) -> int:
        """How many policies Cedar sees for this pair (for status pages and benchmarks)."""
        found = self._pairs.get((direction, caller, capability))
        return (found or self._evaluator(self._select(direction, caller, capability))).size

    def slice_summary(self, direction: Direction) -> tuple[tuple[str, str, str], ...]:
        """(@id, effect, @reason) of every policy that can apply to this agent's calls in
        `direction`: the slice this sidecar evaluates (the admin port's /status)."""
        chosen = self._outbound_slice if direction is Direction.OUTBOUND else self._inbound_slice
        return tuple((p.policy_id, p.effect, p.reason) for i, p in enumerate(self._policies) if i in chosen)

    @property
    def policy_count(self) -> int:
        return len(self._policies)

    @property
    def decision_cache_entries(self) -> int:
        """Decisions kept under their context, capability and tool calls alike."""
        return len(self._decisions) + self._tools.decision_cache_entries

    def _foreseen_pairs(self, entity_names: Mapping[str, frozenset[str]]) -> dict[_Pair, _Evaluator]:
        """Every pair this agent can be part of whose policies differ from an unknown name's:
        outbound, this agent with every capability the bundle names; inbound, every agent the
        bundle names with every local capability."""
        capabilities = (
            entity_names.get(CAPABILITY_TYPE, frozenset()) | self._resources.named() | self._local_capabilities
        )
        agents = entity_names.get(AGENT_TYPE, frozenset()) | self._principals.named() | {self.local_agent}
        keys = [(Direction.OUTBOUND, self.local_agent, c) for c in sorted(capabilities)]
        keys += [(Direction.INBOUND, a, c) for a in sorted(agents) for c in sorted(self._local_capabilities)]
        sets = {key: self._select(*key) for key in keys}
        if self.slicing is Slicing.SCOPE:
            probes = {i: probe for i, p in enumerate(self._policies) if (probe := context_free_probe(p.template))}
            sets = prune_false_for_pair(
                sets,
                probes,
                lambda probe: _policy_set({"probe": probe}),
                lambda key: _request(key[1], key[2]),
                self._entities,
            )
        return {key: self._evaluator(indexes) for key, indexes in sets.items()}

    def _select(self, direction: Direction, caller: str, capability: str) -> frozenset[int]:
        if self.slicing is Slicing.NONE:
            return self._callable
        if self.slicing is Slicing.AGENT:
            if direction is Direction.OUTBOUND and caller == self.local_agent:
                return self._outbound_slice
            if direction is Direction.INBOUND and capability in self._local_capabilities:
                return self._inbound_slice
            return self._callable  # outside this agent's slice: the whole bundle, still correct
        return self._principals.matching(caller) & self._resources.matching(capability) & self._callable

    def _evaluator(self, indexes: frozenset[int]) -> _Evaluator:
        found = self._evaluators.get(indexes)
        if found is None:
            found = self._evaluators[indexes] = _build_evaluator([self._policies[i] for i in sorted(indexes)])
        return found

    def _context(self, plan: tuple[tuple[str, Reads], ...], args_json: ArgumentsSource, facts: CallFacts) -> str:
        context: dict[str, object] = {}
        for name, part in plan:
            if name == ARGS:
                context[ARGS] = True if part.presence_only else project(arguments_of(args_json), part, self._args_type)
            elif name == SESSION_ID:
                context[SESSION_ID] = facts.session_id
            elif name == WORKFLOW_ID:
                context[WORKFLOW_ID] = facts.workflow_id
            elif name == TIME:
                context[TIME] = _time_record(facts.now_unix_s, part)
            elif name == COST_ESTIMATE and facts.cost_estimate_micro_usd is not None:
                context[COST_ESTIMATE] = _cost(facts.cost_estimate_micro_usd)
        return _ENCODER.encode(context)


def _parse_policies(texts: Iterable[str], parsed: ParsedFiles) -> dict[str, tuple[pst.Template, ...]]:
    """The policies of every file by its text, parsed a few statements at a time: a cedarpy
    call holds the GIL throughout, so a 1,000-policy bundle parsed in one call would stall the
    event loop for tens of milliseconds even from a worker thread; in steps, the loop runs
    between them. A text in `parsed` is taken from there: splitting statements and converting
    them to syntax trees is a quarter of a build's CPU, all of it holding the GIL, and a new
    revision usually changes few files (benchmarks/README.md, issue 13's wall-time lags)."""
    found: dict[str, tuple[pst.Template, ...]] = {}
    for text in texts:
        if text in found:
            continue
        if text in parsed:
            found[text] = parsed[text]
            continue
        templates: list[pst.Template] = []
        statements = split_statements(text)
        for start in range(0, len(statements), _PARSE_STEP_STATEMENTS):
            chunk = "\n".join(s.text for s in statements[start : start + _PARSE_STEP_STATEMENTS])
            templates.extend(cedarpy.PolicySet.from_str(chunk, release_gil=True).to_pst().static_policies.values())
        found[text] = tuple(templates)
    return found


def _policies(templates: Iterable[pst.Template], label: str) -> list[_Policy]:
    found: list[_Policy] = []
    seen: set[str] = set()
    for template in templates:
        policy_id = template.annotations.get("id") or template.id
        if policy_id in seen:
            raise BundleError(
                f'cannot be activated: two policies have @id("{policy_id}"); rebuild it with `meshwarden bundle build`',
                bundle=label,
            )
        seen.add(policy_id)
        found.append(_Policy(policy_id, template.effect, template.annotations.get("reason", ""), template))
    return found


def _approval_rules(policies: list[_Policy], label: str) -> dict[str, ApprovalRule]:
    """The @approval rule of each permit that has one (meshwarden.policy_bundle.approval_rules)."""
    rules: dict[str, ApprovalRule] = {}
    for policy in policies:
        try:
            rule = approval_rule(policy.effect, policy.template.annotations)
        except ValueError as exc:
            raise BundleError(
                f'cannot be activated: policy "{policy.policy_id}": {exc}; rebuild it with `meshwarden bundle build`',
                bundle=label,
            ) from exc
        if rule is not None:
            rules[policy.policy_id] = rule
    return rules


def _build_evaluator(policies: list[_Policy]) -> _Evaluator:
    if not policies:
        return _Evaluator(None, Reads(), (), frozenset(), 0)
    forbids = frozenset(p.policy_id for p in policies if p.effect == "forbid")
    reads = context_reads(p.template for p in policies)
    plan = tuple((name, EVERYTHING) for name in CONTEXT_FIELDS) if reads.whole else tuple(reads.parts.items())
    return _Evaluator(_policy_set({p.policy_id: p.template for p in policies}), reads, plan, forbids, len(policies))


def _policy_set(templates: Mapping[str, pst.Template]) -> cedarpy.PolicySet:
    """A cedarpy PolicySet of `templates`, each under its given id (the @id), so Cedar's
    diagnostics name policies as people do."""
    static = pst.FrozenMap({policy_id: replace(t, id=policy_id) for policy_id, t in templates.items()})
    return cedarpy.PolicySet.from_pst(
        pst.PolicySet(templates=pst.FrozenMap(), static_policies=static, template_links=()), release_gil=True
    )


def _request(agent: str, capability: str) -> dict[str, object]:
    return {
        "principal": {"type": AGENT_TYPE, "id": agent},
        "action": _ACTION,
        "resource": {"type": CAPABILITY_TYPE, "id": capability},
    }


def _time_record(now_unix_s: int, reads: Reads) -> dict[str, int]:
    """UTC; weekday as in ISO 8601: 1 = Monday ... 7 = Sunday. Only the fields read."""
    every = reads.whole or reads.presence_only
    record: dict[str, int] = {}
    if every or "unix" in reads.parts:
        record["unix"] = now_unix_s
    if every or "hour" in reads.parts or "weekday" in reads.parts:
        moment = time.gmtime(now_unix_s)
        if every or "hour" in reads.parts:
            record["hour"] = moment.tm_hour
        if every or "weekday" in reads.parts:
            record["weekday"] = moment.tm_wday + 1
    return record


def _cost(value: int) -> int:
    if not LONG_MIN <= value <= LONG_MAX:
        raise ArgumentsNotMappable(COST_ESTIMATE, f"the cost estimate {value} is outside Cedar's Long range")
    return value


def _entity_names(entities_text: str) -> dict[str, frozenset[str]]:
    names: dict[str, set[str]] = {}
    for entity in json.loads(entities_text):
        names.setdefault(entity["uid"]["type"], set()).add(entity["uid"]["id"])
    return {kind: frozenset(found) for kind, found in names.items()}


def _pinned_spiffe_ids(entities_text: str) -> dict[str, str]:
    pinned: dict[str, str] = {}
    for entity in json.loads(entities_text):
        spiffe_id = entity.get("attrs", {}).get("spiffe_id")
        if entity["uid"]["type"] == AGENT_TYPE and isinstance(spiffe_id, str):
            pinned[entity["uid"]["id"]] = spiffe_id
    return pinned


def _teams(entities_text: str) -> dict[str, str]:
    teams: dict[str, str] = {}
    for entity in json.loads(entities_text):
        team = entity.get("attrs", {}).get("team")
        if entity["uid"]["type"] == AGENT_TYPE and isinstance(team, str):
            teams[entity["uid"]["id"]] = team
    return teams


def _capability_kinds(entities_text: str) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for entity in json.loads(entities_text):
        kind = entity.get("attrs", {}).get("kind")
        if entity["uid"]["type"] == CAPABILITY_TYPE and isinstance(kind, str):
            kinds[entity["uid"]["id"]] = kind
    return kinds
