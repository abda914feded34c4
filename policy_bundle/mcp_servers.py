"""mcp_servers.toml: the MCP servers a bundle lets agents reach through their sidecar, the
credential each needs, and each tool's risk and input-schema hash. Checked once, at build
(and again when a sidecar reads a verified bundle).

    [servers.tickets]
    url = "https://tickets.internal/mcp"        # streamable HTTP, or:
    # command = ["python", "-m", "tickets_mcp"]  # a process the sidecar starts and speaks stdio to
    credential = { name = "tickets", scheme = "bearer" }

    [servers.tickets.tools.read_ticket]
    risk = "read"                                # read | write | destructive
    input_schema_sha256 = "<64 hex>"             # `meshwarden tools hash`
    cost_micro_usd = 200                         # optional: what the budget stage charges per call

The bundle names a credential, never holds it: the secret lives on each sidecar's host (a
0600 file or an environment variable, see sidecar/hops/mcp_credentials.py), so a signed
bundle can be shown to anyone. Unknown keys are errors, as in manifest.toml.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import urlsplit

from meshwarden.names import MCP_SERVER_NAME, MCP_SERVER_NAME_RULE, TOOL_NAME, TOOL_NAME_RULE
from meshwarden.policy_bundle.errors import BundleInvalid, SourceProblem

MCP_SERVERS_FILE: Final = "mcp_servers.toml"
RISKS: Final = ("read", "write", "destructive")
SCHEMES: Final = ("bearer", "api_key", "oauth_client_credentials", "env")
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_HEADER: Final = re.compile(r"[A-Za-z0-9-]{1,64}")
_ENV: Final = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
_CREDENTIAL_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_SERVER_KEYS: Final = frozenset({"url", "command", "credential", "tools", "timeout_s"})
_TOOL_KEYS: Final = frozenset({"risk", "input_schema_sha256", "cost_micro_usd"})
_CREDENTIAL_KEYS: Final = frozenset({"name", "scheme", "header", "env", "issuer", "client_id", "scope"})
MAX_COMMAND_ARGS: Final = 64
MAX_TIMEOUT_S: Final = 600.0

Risk = Literal["read", "write", "destructive"]
Scheme = Literal["bearer", "api_key", "oauth_client_credentials", "env"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialRef:
    """Which secret a server needs and how it goes upstream; the secret itself stays on hosts.

    bearer: `Authorization: Bearer <secret>`; api_key: `<header>: <secret>`;
    oauth_client_credentials: the secret is the client secret of `client_id` at `issuer`;
    env (stdio servers): the secret is set as the environment variable `env` of the process."""

    name: str
    scheme: Scheme
    header: str = ""
    env: str = ""
    issuer: str = ""
    client_id: str = ""
    scope: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolDecl:
    server: str
    name: str
    risk: Risk
    input_schema_sha256: str  # 64 hex digits, of schema_sha256(inputSchema)
    cost_micro_usd: int | None = None

    @property
    def qualified(self) -> str:
        """ "server.tool", as agents see it on their sidecar's MCP endpoint."""
        return f"{self.server}.{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class McpServerDecl:
    name: str
    url: str = ""  # streamable HTTP endpoint; "" for a stdio server
    command: tuple[str, ...] = ()  # the stdio server's argv; () for an HTTP server
    credential: CredentialRef | None = None
    tools: Mapping[str, ToolDecl] = field(default_factory=dict)  # by tool name
    timeout_s: float = 30.0  # per call, within the caller's deadline


@dataclass(frozen=True, slots=True)
class McpServers:
    servers: Mapping[str, McpServerDecl] = field(default_factory=dict)

    def tool(self, qualified: str) -> ToolDecl | None:
        """The declared tool named "server.tool", or None."""
        server, _, name = qualified.partition(".")
        found = self.servers.get(server)
        return found.tools.get(name) if found is not None else None

    def all_tools(self) -> list[ToolDecl]:
        return [t for s in self.servers.values() for t in s.tools.values()]


NO_SERVERS: Final = McpServers()


def schema_sha256(input_schema: Mapping[str, object]) -> str:
    """The hash a bundle declares for a tool's input schema: SHA-256 of its canonical JSON
    (sorted keys, no spaces, UTF-8), so key order and whitespace do not count as drift."""
    canonical = json.dumps(input_schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_mcp_servers(text: str) -> McpServers:
    """The declarations in `text`, or BundleInvalid listing every problem with its line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BundleInvalid([SourceProblem(MCP_SERVERS_FILE, 1, f"not valid TOML: {exc}")]) from exc
    problems: list[SourceProblem] = []

    def problem(key: str, message: str) -> None:
        problems.append(SourceProblem(MCP_SERVERS_FILE, _line_of(text, key), message))

    for key in sorted(set(data) - {"servers"}):
        problem(key, f"unknown key {key}; this file has one table, [servers.NAME]")
    raw_servers = data.get("servers", {})
    if not isinstance(raw_servers, dict):
        problem("servers", "servers must be tables: [servers.NAME]")
        raw_servers = {}
    servers: dict[str, McpServerDecl] = {}
    for name, raw in raw_servers.items():
        found = _server(name, raw, problem)
        if found is not None:
            servers[name] = found
    if problems:
        raise BundleInvalid(problems)
    return McpServers(servers)


_Problem = Callable[[str, str], None]


def _server(name: str, raw: object, problem: _Problem) -> McpServerDecl | None:
    where = f"servers.{name}"
    if not MCP_SERVER_NAME.fullmatch(name):
        problem(name, f"server name {name!r} must be {MCP_SERVER_NAME_RULE} (tools are named SERVER.TOOL)")
        return None
    if not isinstance(raw, dict):
        problem(name, f"{where} must be a table")
        return None
    for key in sorted(set(raw) - _SERVER_KEYS):
        problem(key, f"unknown key {where}.{key}; known keys: {', '.join(sorted(_SERVER_KEYS))}")
    url, command = raw.get("url", ""), raw.get("command", [])
    if bool(url) == bool(command):
        problem(name, f"{where} needs exactly one of url (streamable HTTP) or command (stdio)")
    if url and (not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
        problem("url", f"{where}.url must be an http:// or https:// URL, got {url!r}")
        url = ""
    if command and (
        not isinstance(command, list)
        or not 1 <= len(command) <= MAX_COMMAND_ARGS
        or not all(isinstance(a, str) and a and "\x00" not in a for a in command)
    ):
        problem("command", f"{where}.command must be a list of 1 to {MAX_COMMAND_ARGS} non-empty strings (argv)")
        command = []
    timeout_s = raw.get("timeout_s", 30.0)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= MAX_TIMEOUT_S:
        problem("timeout_s", f"{where}.timeout_s must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}")
        timeout_s = 30.0
    credential = _credential(where, raw.get("credential"), bool(command), problem)
    raw_tools = raw.get("tools", {})
    if not isinstance(raw_tools, dict) or not raw_tools:
        problem(name, f"{where} declares no tools: add [{where}.tools.NAME] with its risk and input_schema_sha256")
        raw_tools = {}
    tools: dict[str, ToolDecl] = {}
    for tool_name, raw_tool in raw_tools.items():
        tool = _tool(name, tool_name, raw_tool, problem)
        if tool is not None:
            tools[tool_name] = tool
    return McpServerDecl(
        name=name,
        url=url if isinstance(url, str) else "",
        command=tuple(command) if isinstance(command, list) else (),
        credential=credential,
        tools=tools,
        timeout_s=float(timeout_s),
    )


def _tool(server: str, name: str, raw: object, problem: _Problem) -> ToolDecl | None:
    where = f"servers.{server}.tools.{name}"
    if not TOOL_NAME.fullmatch(name):
        problem(name, f"tool name {name!r} must be {TOOL_NAME_RULE}")
        return None
    if not isinstance(raw, dict):
        problem(name, f"{where} must be a table")
        return None
    for key in sorted(set(raw) - _TOOL_KEYS):
        problem(key, f"unknown key {where}.{key}; known keys: {', '.join(sorted(_TOOL_KEYS))}")
    risk = raw.get("risk")
    if risk not in RISKS:
        problem("risk", f"{where}.risk must be one of {', '.join(RISKS)}, got {risk!r}")
        return None
    digest = raw.get("input_schema_sha256")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        problem(
            "input_schema_sha256",
            f"{where}.input_schema_sha256 must be 64 lowercase hex digits (`meshwarden tools hash` prints it)",
        )
        return None
    cost = raw.get("cost_micro_usd")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int) or not 0 <= cost < 2**53):
        problem("cost_micro_usd", f"{where}.cost_micro_usd must be a whole number of millionths of a dollar, >= 0")
        cost = None
    return ToolDecl(server=server, name=name, risk=risk, input_schema_sha256=digest, cost_micro_usd=cost)


def _credential(where: str, raw: object, stdio: bool, problem: _Problem) -> CredentialRef | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problem("credential", f"{where}.credential must be a table: {{ name = ..., scheme = ... }}")
        return None
    for key in sorted(set(raw) - _CREDENTIAL_KEYS):
        problem(key, f"unknown key {where}.credential.{key}; known keys: {', '.join(sorted(_CREDENTIAL_KEYS))}")
    name, scheme = raw.get("name"), raw.get("scheme")
    if not isinstance(name, str) or not _CREDENTIAL_NAME.fullmatch(name):
        problem("credential", f"{where}.credential.name must be {MCP_SERVER_NAME_RULE}, got {name!r}")
        return None
    if scheme not in SCHEMES:
        problem("credential", f"{where}.credential.scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
        return None
    texts = {k: raw.get(k, "") for k in ("header", "env", "issuer", "client_id", "scope")}
    if not all(isinstance(v, str) for v in texts.values()):
        problem("credential", f"{where}.credential: header, env, issuer, client_id and scope are strings")
        return None
    if stdio != (scheme == "env"):
        problem(
            "credential",
            f"{where}.credential.scheme: a stdio server (command) takes its secret as an environment "
            'variable (scheme = "env"); an HTTP server (url) takes bearer, api_key or oauth_client_credentials',
        )
        return None
    required = {"api_key": ("header", _HEADER), "env": ("env", _ENV)}.get(str(scheme))
    if required is not None and not required[1].fullmatch(str(texts[required[0]])):
        problem(
            "credential",
            f"{where}.credential.{required[0]} is required for scheme {scheme} and must match {required[1].pattern}",
        )
        return None
    if scheme == "oauth_client_credentials" and (
        urlsplit(str(texts["issuer"])).scheme not in ("http", "https") or not texts["client_id"]
    ):
        problem(
            "credential", f"{where}.credential: oauth_client_credentials needs issuer (an http(s) URL) and client_id"
        )
        return None
    return CredentialRef(
        name=name,
        scheme=scheme,
        header=str(texts["header"]),
        env=str(texts["env"]),
        issuer=str(texts["issuer"]),
        client_id=str(texts["client_id"]),
        scope=str(texts["scope"]),
    )


def _line_of(text: str, key: str) -> int:
    """The first line that mentions `key` (a table header or an assignment); 1 if none."""
    pattern = re.compile(rf"(^|[\s.\[\"]){re.escape(key)}([\s.\]\"=]|$)")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.search(line):
            return number
    return 1
