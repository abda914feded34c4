"""The Cedar model every bundle shares with the sidecar: who calls (Agent), what is called
(Capability, or an MCP Tool), the actions (Action::"call", Action::"CallTool") and the context
the sidecar provides.

A bundle's schema may declare less context than the sidecar provides (policies then cannot
read the rest) but never something else: a policy reading `context.foo` that no sidecar ever
sends would fail on every call, so build refuses it up front.
"""

from __future__ import annotations

from typing import Final, Literal

from meshwarden.policy_bundle.schema_shape import (
    Attribute,
    CallAction,
    CedarType,
    EntityDecl,
    Named,
    Primitive,
    RecordOf,
    SetOf,
)

AGENT_TYPE: Final = "Agent"
CAPABILITY_TYPE: Final = "Capability"
ACTION_TYPE: Final = "Action"
CALL_ACTION: Final = "call"
MODEL_TYPE: Final = "Model"
MODEL_ACTION: Final = "CallModel"  # a call through the model gateway (models.json)
# The context the model gateway provides to CallModel policies, and its Cedar types.
MODEL_CONTEXT: Final[dict[str, Literal["Long", "String"]]] = {
    "session_id": "String",
    "workflow_id": "String",
    "team": "String",  # the calling agent's team ("" when the bundle gives it none)
    "estimated_input_tokens": "Long",
    "max_output_tokens": "Long",  # the client's cap, or the catalog's default_max_tokens
    "cost_estimate_micro_usd": "Long",  # worst case: estimated input plus the output cap, at catalog prices
}
MODEL_ATTRIBUTES: Final = {
    "provider": "String",
    "tier": "String",
    "context_tokens": "Long",
    "input_micro_usd_per_mtok": "Long",
    "output_micro_usd_per_mtok": "Long",
}
TOOL_TYPE: Final = "Tool"  # an MCP tool, id "server.tool"; built by sidecars from mcp_servers.toml
CALL_TOOL_ACTION: Final = "CallTool"
TOOL_ATTRIBUTES: Final = ("server", "name", "risk")  # all String
TEAM: Final = "team"  # the calling agent's team (tool calls)

ARGS: Final = "args"
SESSION_ID: Final = "session_id"
WORKFLOW_ID: Final = "workflow_id"
TIME: Final = "time"
COST_ESTIMATE: Final = "cost_estimate_micro_usd"
TIME_FIELDS: Final = ("unix", "hour", "weekday")
CONTEXT_FIELDS: Final = (ARGS, SESSION_ID, WORKFLOW_ID, TIME, COST_ESTIMATE)
TOOL_CONTEXT_FIELDS: Final = (ARGS, SESSION_ID, WORKFLOW_ID, TEAM, TIME, COST_ESTIMATE)

_LONG: Final = Primitive("Long")
_STRING: Final = Primitive("String")


def call_action_problems(action: CallAction) -> list[tuple[int, str]]:
    """(line, message) for each way `action "call"` departs from the model; empty if none."""
    problems: list[tuple[int, str]] = []
    if action.principal_types != (AGENT_TYPE,):
        problems.append((action.line, f'action "call" must apply to principal [{AGENT_TYPE}] only'))
    if action.resource_types != (CAPABILITY_TYPE,):
        problems.append((action.line, f'action "call" must apply to resource [{CAPABILITY_TYPE}] only'))
    for name, attribute in action.context.attributes.items():
        problems.extend(_context_field_problems(name, attribute))
    return problems


def call_tool_action_problems(action: CallAction, tool: EntityDecl | None) -> list[tuple[int, str]]:
    """(line, message) for each way `action "CallTool"` or `entity Tool` departs from the model."""
    problems: list[tuple[int, str]] = []
    if action.principal_types != (AGENT_TYPE,):
        problems.append((action.line, f'action "{CALL_TOOL_ACTION}" must apply to principal [{AGENT_TYPE}] only'))
    if action.resource_types != (TOOL_TYPE,):
        problems.append((action.line, f'action "{CALL_TOOL_ACTION}" must apply to resource [{TOOL_TYPE}] only'))
    for name, attribute in action.context.attributes.items():
        if name == TEAM:
            if attribute.type != _STRING:
                problems.append((attribute.line, "context.team must be String"))
        elif name not in TOOL_CONTEXT_FIELDS:
            problems.append(
                (
                    attribute.line,
                    f"context.{name} is not provided for tool calls; they provide {', '.join(TOOL_CONTEXT_FIELDS)}",
                )
            )
        else:
            problems.extend(_context_field_problems(name, attribute))
    wanted = f"entity {TOOL_TYPE} {{ server: String, name: String, risk: String }};"
    if tool is None:
        problems.append((action.line, f"declare `{wanted}`: sidecars build one per tool of mcp_servers.toml"))
    elif set(tool.attributes.attributes) != set(TOOL_ATTRIBUTES) or any(
        a.type != _STRING or not a.required for a in tool.attributes.attributes.values()
    ):
        problems.append((tool.line, f"declare Tool exactly as `{wanted}`: sidecars give it those attributes"))
    return problems


def _context_field_problems(name: str, attribute: Attribute) -> list[tuple[int, str]]:
    line, declared = attribute.line, attribute.type
    if name == ARGS:
        if not isinstance(declared, RecordOf):
            return [(line, "context.args must be a record type: { name?: Type, ... }")]
        return _args_problems(declared, "context.args", line)
    if name in (SESSION_ID, WORKFLOW_ID) and declared != _STRING:
        return [(line, f"context.{name} must be String")]
    if name == TIME:
        return _time_problems(declared, line)
    if name == COST_ESTIMATE:
        if declared != _LONG:
            return [(line, f"context.{COST_ESTIMATE} must be Long (millionths of a dollar)")]
        if attribute.required:
            return [
                (
                    line,
                    f"declare context.{COST_ESTIMATE} optional ({COST_ESTIMATE}?: Long): callers need not "
                    "declare an estimate; policies check `context has cost_estimate_micro_usd`",
                )
            ]
        return []
    if name not in CONTEXT_FIELDS:
        return [
            (line, f"context.{name} is not provided by meshwarden sidecars; they provide {', '.join(CONTEXT_FIELDS)}")
        ]
    return []


def _time_problems(declared: CedarType, line: int) -> list[tuple[int, str]]:
    if not isinstance(declared, RecordOf):
        return [(line, "context.time must be a record { unix: Long, hour: Long, weekday: Long } (or part of it)")]
    return [
        (
            a.line,
            f"context.time.{field} must be Long" if field in TIME_FIELDS else f"context.time.{field} is not provided",
        )
        for field, a in declared.attributes.items()
        if field not in TIME_FIELDS or a.type != _LONG
    ]


def _args_problems(declared: CedarType, path: str, line: int) -> list[tuple[int, str]]:
    """JSON arguments map to Long, String, Bool, Set and Record only (see policy_bundle/README.md)."""
    if isinstance(declared, RecordOf):
        found: list[tuple[int, str]] = []
        for name, attribute in declared.attributes.items():
            found.extend(_args_problems(attribute.type, f"{path}.{name}", attribute.line))
        return found
    if isinstance(declared, SetOf):
        return _args_problems(declared.element, f"{path}[]", line)
    if isinstance(declared, Named):
        return [
            (
                line,
                f"{path} is declared as {declared.name}, but call arguments are JSON: declare it as Long, "
                "String, Bool, Set<...> or a record",
            )
        ]
    return []


def model_action_problems(action: CallAction | None) -> list[tuple[int, str]]:
    """(line, message) for each way `action "CallModel"` departs from what the gateway provides."""
    declare = (
        f'declare `action "{MODEL_ACTION}" appliesTo {{ principal: [{AGENT_TYPE}], resource: [{MODEL_TYPE}], '
        "context: {...} };` for a bundle with models.json (see `meshwarden bundle init`)"
    )
    if action is None:
        return [(1, declare)]
    problems: list[tuple[int, str]] = []
    if action.principal_types != (AGENT_TYPE,) or action.resource_types != (MODEL_TYPE,):
        problems.append((action.line, declare))
    for name, attribute in action.context.attributes.items():
        wanted = MODEL_CONTEXT.get(name)
        if wanted is None:
            problems.append(
                (
                    attribute.line,
                    f"context.{name} is not provided to {MODEL_ACTION}; it provides {', '.join(MODEL_CONTEXT)}",
                )
            )
        elif attribute.type != Primitive(wanted):
            problems.append((attribute.line, f"context.{name} of {MODEL_ACTION} must be {wanted}"))
    return problems
