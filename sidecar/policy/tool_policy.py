"""Decisions on MCP tool calls: Cedar's `Action::"CallTool"` on a `Tool::"server.tool"` whose
attributes (server, name, risk) come from the bundle's mcp_servers.toml.

Built once per bundle revision beside ActivePolicy's capability decisions. Tool calls are far
fewer than agent calls and tool policies few, so this keeps it simple: one policy set (the
policies whose action can be CallTool) and the context fields those policies read. Decisions
are kept as ActivePolicy keeps them: Cedar is deterministic, so the same agent calling the
same tool with the same context (the exact JSON Cedar would see; none when no policy reads
any) gets the decision it got before, without Cedar (about a tenth of the sidecar's CPU per
tool call, benchmarks/README.md "tool_gateway.py"), first in, first out beyond the bound.
The same fail-closed rules hold: default deny, a forbid that cannot be evaluated denies.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Final

import cedarpy
from cedarpy import pst

from meshwarden.policy_bundle.approval_rules import ApprovalRule
from meshwarden.policy_bundle.mcp_servers import McpServers, ToolDecl
from meshwarden.policy_bundle.model import (
    AGENT_TYPE,
    ARGS,
    CALL_TOOL_ACTION,
    COST_ESTIMATE,
    SESSION_ID,
    TEAM,
    TIME,
    TOOL_CONTEXT_FIELDS,
    TOOL_TYPE,
    WORKFLOW_ID,
)
from meshwarden.policy_bundle.schema_shape import RecordOf, SchemaShape
from meshwarden.sidecar.policy.cedar_values import (
    LONG_MAX,
    LONG_MIN,
    ArgumentsNotMappable,
    ArgumentsSource,
    arguments_of,
    project,
)
from meshwarden.sidecar.policy.decision import CallFacts, Decision
from meshwarden.sidecar.policy.outcome import Outcomes
from meshwarden.sidecar.policy.reads import EVERYTHING, Reads, context_reads

_ACTION: Final = {"type": "Action", "id": CALL_TOOL_ACTION}
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))


def may_be_call_tool(constraint: pst.ActionConstraint) -> bool:
    """False only when the policy names one action and it is not CallTool."""
    if isinstance(constraint, pst.ActionEq):
        return (str(constraint.entity.type), constraint.entity.id) == ("Action", CALL_TOOL_ACTION)
    return True


def tool_entities(servers: McpServers) -> list[dict[str, object]]:
    """One Cedar `Tool` entity per declared tool, in Cedar's entity JSON."""
    return [
        {
            "uid": {"type": TOOL_TYPE, "id": tool.qualified},
            "attrs": {"server": tool.server, "name": tool.name, "risk": tool.risk},
            "parents": [],
        }
        for tool in servers.all_tools()
    ]


class ToolPolicy:
    def __init__(
        self,
        *,
        label: str,
        schema: cedarpy.Schema,
        shape: SchemaShape,
        entities: list[dict[str, object]],
        templates: Mapping[str, pst.Template],  # every policy of the bundle, by @id
        reasons: Mapping[str, str],
        servers: McpServers,
        teams: Mapping[str, str],
        approvals: Mapping[str, ApprovalRule] | None = None,  # the permits' @approval rules, by @id
        decision_cache_size: int = 4096,  # decisions kept; 0 turns the memo off
    ) -> None:
        self._label, self._servers, self._teams = label, servers, teams
        self._decisions: dict[tuple[str, str, str | None], Decision] = {}
        self._decision_cache_size = decision_cache_size
        action = shape.actions.get(CALL_TOOL_ACTION)
        self._enabled = action is not None and TOOL_TYPE in shape.entities
        applicable = {pid: t for pid, t in templates.items() if may_be_call_tool(t.action)} if self._enabled else {}
        args = action.context.attributes.get(ARGS) if action is not None else None
        self._args_type = args.type if args is not None and isinstance(args.type, RecordOf) else RecordOf({})
        self._outcomes = Outcomes(label, reasons, approvals)  # a permit's @approval holds a tool call too
        self._forbids = frozenset(pid for pid, t in applicable.items() if t.effect == "forbid")
        reads = context_reads(applicable.values())
        self._plan: tuple[tuple[str, Reads], ...] = (
            tuple((name, EVERYTHING) for name in TOOL_CONTEXT_FIELDS) if reads.whole else tuple(reads.parts.items())
        )
        self._policy_set = (
            cedarpy.PolicySet.from_pst(
                pst.PolicySet(
                    templates=pst.FrozenMap(),
                    static_policies=pst.FrozenMap({pid: _with_id(t, pid) for pid, t in applicable.items()}),
                    template_links=(),
                ),
                release_gil=True,
            )
            if applicable
            else None
        )
        self._entities = (
            cedarpy.Entities.from_json_str(json.dumps(entities + tool_entities(servers)), schema, release_gil=True)
            if self._enabled
            else None
        )

    @property
    def servers(self) -> McpServers:
        return self._servers

    def decide(self, agent: str, tool: ToolDecl, args_json: ArgumentsSource, facts: CallFacts) -> Decision:
        """Whether `agent` may call `tool` with these (schema-valid) arguments, and why.
        ArgumentsNotMappable when an argument a policy reads cannot be given to Cedar."""
        if self._policy_set is None or self._entities is None:
            return self._outcomes.default_deny(agent, tool.qualified)
        context = self._context(agent, args_json, facts) if self._plan else None
        key = (agent, tool.qualified, context)
        kept = self._decisions.get(key)
        if kept is not None:
            return kept
        request: dict[str, object] = {
            "principal": {"type": AGENT_TYPE, "id": agent},
            "action": _ACTION,
            "resource": {"type": TOOL_TYPE, "id": tool.qualified},
        }
        if context is not None:
            request["context"] = context
        result = cedarpy.is_authorized(request, self._policy_set, self._entities)
        decision = self._outcomes.decision(result, self._forbids, agent, tool.qualified)
        if self._decision_cache_size:
            if len(self._decisions) >= self._decision_cache_size:
                self._decisions.pop(next(iter(self._decisions)), None)
            self._decisions[key] = decision
        return decision

    @property
    def decision_cache_entries(self) -> int:
        return len(self._decisions)

    def visible(self, agent: str, tool: ToolDecl, facts: CallFacts) -> bool:
        """Whether `tools/list` shows the tool to `agent`: some call to it may be permitted.
        Decided without arguments: a decision that needs them (a policy reading context.args
        errors without them) leaves the tool listed, and its calls are decided one by one."""
        if self._policy_set is None or self._entities is None:
            return False
        request: dict[str, object] = {
            "principal": {"type": AGENT_TYPE, "id": agent},
            "action": _ACTION,
            "resource": {"type": TOOL_TYPE, "id": tool.qualified},
            "context": self._context(agent, b"", facts, with_args=False),
        }
        result = cedarpy.is_authorized(request, self._policy_set, self._entities)
        return result.decision is cedarpy.Decision.Allow or bool(result.diagnostics.errors)

    def _context(self, agent: str, args_json: ArgumentsSource, facts: CallFacts, *, with_args: bool = True) -> str:
        context: dict[str, object] = {}
        for name, part in self._plan:
            if name == ARGS and not with_args:
                continue
            if name == ARGS:
                try:
                    context[ARGS] = (
                        True if part.presence_only else project(arguments_of(args_json), part, self._args_type)
                    )
                except ArgumentsNotMappable as exc:
                    raise exc.for_bundle(self._label) from None
            elif name == SESSION_ID:
                context[SESSION_ID] = facts.session_id
            elif name == WORKFLOW_ID:
                context[WORKFLOW_ID] = facts.workflow_id
            elif name == TEAM:
                context[TEAM] = self._teams.get(agent, "")
            elif name == TIME:
                moment = time.gmtime(facts.now_unix_s)  # weekday as in ISO 8601: 1 = Monday
                context[TIME] = {"unix": facts.now_unix_s, "hour": moment.tm_hour, "weekday": moment.tm_wday + 1}
            elif name == COST_ESTIMATE and facts.cost_estimate_micro_usd is not None:
                if not LONG_MIN <= facts.cost_estimate_micro_usd <= LONG_MAX:
                    raise ArgumentsNotMappable(COST_ESTIMATE, "the cost estimate is outside Cedar's Long range")
                context[COST_ESTIMATE] = facts.cost_estimate_micro_usd
        return _ENCODER.encode(context)


def _with_id(template: pst.Template, policy_id: str) -> pst.Template:
    return replace(template, id=policy_id)
