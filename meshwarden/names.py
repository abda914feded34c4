"""The shapes of names in the mesh, checked the same way by the registry, sidecar and CLI.

Agent names are DNS labels because each agent's SPIFFE ID maps to a DNS name in its
certificate (see meshwarden/identity), and gRPC checks that name on every connection.
"""

from __future__ import annotations

import re
from typing import Final

AGENT_NAME: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
AGENT_NAME_RULE: Final = "1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit"
CAPABILITY_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")
CAPABILITY_NAME_RULE: Final = "1-128 characters of a-z, 0-9, '_', '.' and '-', starting with a letter or digit"
# MCP servers as a bundle names them: no dot, so "server.tool" splits at its first dot.
MCP_SERVER_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
MCP_SERVER_NAME_RULE: Final = "1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
# Tool names as the MCP specification (2025-11-25, "Tool names") allows them.
TOOL_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,128}")
TOOL_NAME_RULE: Final = "1-128 characters of letters, digits, '_', '.' and '-'"
# A tool as the mesh names it: SERVER.TOOL.
QUALIFIED_TOOL: Final = re.compile(r"([a-z0-9][a-z0-9_-]{0,62})\.([A-Za-z0-9_.-]{1,128})")
QUALIFIED_TOOL_RULE: Final = (
    f"SERVER.TOOL: a server name of {MCP_SERVER_NAME_RULE}, a dot, a tool name of {TOOL_NAME_RULE}"
)
