"""The scopes of kill switches and the NAME@VERSION targets of isolation, checked the same way
by the CLI (before sending), the registry (before storing) and sidecars (when matching).

A scope is a kind and a value. The kinds are the `--instance`, `--agent`, `--version`,
`--session`, `--workflow`, `--capability`, `--team`, `--model`, `--provider`, `--tool`, `--mcp-server`
and `--all` flags of `meshwarden kill` (a model as clients ask for it, a provider as models.json
names it, an MCP tool as SERVER.TOOL, an MCP server as the bundle names it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import semantic_version

from meshwarden.names import (
    AGENT_NAME,
    AGENT_NAME_RULE,
    CAPABILITY_NAME,
    CAPABILITY_NAME_RULE,
    MCP_SERVER_NAME,
    MCP_SERVER_NAME_RULE,
    QUALIFIED_TOOL,
    QUALIFIED_TOOL_RULE,
)
from meshwarden.v1 import controls_pb2

# Flag (and table) name of each kind, in the order `meshwarden kill --help` lists them.
KIND_NAMES: Final[dict[int, str]] = {
    controls_pb2.SCOPE_KIND_INSTANCE: "instance",
    controls_pb2.SCOPE_KIND_AGENT: "agent",
    controls_pb2.SCOPE_KIND_VERSION: "version",
    controls_pb2.SCOPE_KIND_SESSION: "session",
    controls_pb2.SCOPE_KIND_WORKFLOW: "workflow",
    controls_pb2.SCOPE_KIND_CAPABILITY: "capability",
    controls_pb2.SCOPE_KIND_TEAM: "team",
    controls_pb2.SCOPE_KIND_MODEL: "model",
    controls_pb2.SCOPE_KIND_PROVIDER: "provider",
    controls_pb2.SCOPE_KIND_TOOL: "tool",  # an MCP tool, SERVER.TOOL
    controls_pb2.SCOPE_KIND_MCP_SERVER: "mcp-server",  # every tool of one MCP server
    controls_pb2.SCOPE_KIND_ALL: "all",
}
KIND_BY_NAME: Final[dict[str, int]] = {name: kind for kind, name in KIND_NAMES.items()}
_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}")  # instance, session, workflow ids; team names
_ID_RULE: Final = "1-128 characters of letters, digits and _.:/@-, starting with a letter or digit"
MAX_REASON_CHARS: Final = 1000


class ScopeError(ValueError):
    """A scope or target that cannot be enforced; the message names the flag and the rule."""


@dataclass(frozen=True, slots=True)
class VersionTarget:
    agent: str
    version: str

    def __str__(self) -> str:
        return f"{self.agent}@{self.version}"


def parse_version_target(text: str, what: str = "NAME@VERSION") -> VersionTarget:
    """'billing@2.4.0' -> VersionTarget('billing', '2.4.0'), the version normalised."""
    agent, sep, version = text.strip().partition("@")
    if not sep:
        raise ScopeError(f"{what} {text!r} must be NAME@VERSION, as in billing@2.4.0")
    if not AGENT_NAME.fullmatch(agent):
        raise ScopeError(f"{what} {text!r}: the agent name must be {AGENT_NAME_RULE}")
    try:
        normalised = str(semantic_version.Version(version))
    except ValueError as exc:
        raise ScopeError(f"{what} {text!r}: {version!r} is not a semantic version such as 2.4.0") from exc
    return VersionTarget(agent, normalised)


def check_scope(kind: int, value: str) -> str:
    """The value of a valid scope, normalised; ScopeError naming the flag otherwise."""
    name = KIND_NAMES.get(kind)
    if name is None:
        raise ScopeError(f"scope kind {kind} is not one of --{', --'.join(KIND_BY_NAME)}")
    if kind == controls_pb2.SCOPE_KIND_ALL:
        if value:
            raise ScopeError(f"--all takes no value, got {value!r}")
        return ""
    if kind == controls_pb2.SCOPE_KIND_VERSION:
        return str(parse_version_target(value, "--version"))
    if kind == controls_pb2.SCOPE_KIND_AGENT and not AGENT_NAME.fullmatch(value):
        raise ScopeError(f"--agent {value!r} must be {AGENT_NAME_RULE}")
    if kind == controls_pb2.SCOPE_KIND_CAPABILITY and not CAPABILITY_NAME.fullmatch(value):
        raise ScopeError(f"--capability {value!r} must be {CAPABILITY_NAME_RULE}")
    if kind == controls_pb2.SCOPE_KIND_TOOL and not QUALIFIED_TOOL.fullmatch(value):
        raise ScopeError(f"--tool {value!r} must be {QUALIFIED_TOOL_RULE}")
    if kind == controls_pb2.SCOPE_KIND_MCP_SERVER and not MCP_SERVER_NAME.fullmatch(value):
        raise ScopeError(f"--mcp-server {value!r} must be {MCP_SERVER_NAME_RULE}")
    if not _ID.fullmatch(value):
        raise ScopeError(f"--{name} {value!r} must be {_ID_RULE}")
    return value


def check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise ScopeError("--reason is required: say why, so whoever reads the audit log or the refusal knows")
    if len(reason) > MAX_REASON_CHARS:
        raise ScopeError(f"--reason is {len(reason)} characters; keep it under {MAX_REASON_CHARS}")
    return reason


def describe(kind: int, value: str) -> str:
    """'agent billing', 'version billing@2.4.0', 'all calls'."""
    if kind == controls_pb2.SCOPE_KIND_ALL:
        return "all calls"
    return f"{KIND_NAMES.get(kind, 'unknown')} {value}"
