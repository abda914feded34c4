"""mcp_servers.toml: MCP servers, credentials and tools' risk, checked at build; the schema's
CallTool action and Tool entity checked with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshwarden.policy_bundle.build import build
from meshwarden.policy_bundle.errors import BundleInvalid
from meshwarden.policy_bundle.init import SCHEMA
from meshwarden.policy_bundle.mcp_servers import parse_mcp_servers, schema_sha256
from tests.policy_helpers import write_bundle

HASH = "a" * 64
TOOL_SCHEMA = """
entity Tool { server: String, name: String, risk: String };
action "CallTool" appliesTo {
  principal: [Agent], resource: [Tool],
  context: { args: { ticket_id?: Long }, session_id: String, team: String },
};
"""
SERVERS = f"""
[servers.tickets]
url = "https://tickets.internal/mcp"
credential = {{ name = "tickets", scheme = "bearer" }}
[servers.tickets.tools.read_ticket]
risk = "read"
input_schema_sha256 = "{HASH}"
cost_micro_usd = 200

[servers.desk]
command = ["python", "-m", "desk"]
credential = {{ name = "desk", scheme = "env", env = "DESK_TOKEN" }}
[servers.desk.tools.close_ticket]
risk = "destructive"
input_schema_sha256 = "{HASH}"
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(BundleInvalid) as info:
        parse_mcp_servers(text)
    return [p.message for p in info.value.problems]


def test_servers_tools_and_credentials_are_read() -> None:
    servers = parse_mcp_servers(SERVERS)
    read = servers.tool("tickets.read_ticket")
    assert read is not None and (read.risk, read.cost_micro_usd, read.qualified) == ("read", 200, "tickets.read_ticket")
    desk = servers.servers["desk"]
    assert (
        desk.command == ("python", "-m", "desk") and desk.credential is not None and desk.credential.env == "DESK_TOKEN"
    )
    assert servers.tool("tickets.nope") is None and servers.tool("nope.read_ticket") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[servers.t]\nurl = "ftp://x"\n', "http:// or https://"),
        ('[servers.t]\nurl = "https://x/mcp"\ncommand = ["x"]\n', "exactly one of url"),
        ('[servers.t]\nurl = "https://x/mcp"\n', "declares no tools"),
        (
            f'[servers.t]\nurl = "https://x/mcp"\n[servers.t.tools.a]\nrisk = "spicy"\ninput_schema_sha256 = "{HASH}"\n',
            "risk must be",
        ),
        (
            '[servers.t]\nurl = "https://x/mcp"\n[servers.t.tools.a]\nrisk = "read"\ninput_schema_sha256 = "abc"\n',
            "64 lowercase hex",
        ),
        (
            f'[servers."T.x"]\nurl = "https://x/mcp"\n[servers."T.x".tools.a]\nrisk = "read"\ninput_schema_sha256 = "{HASH}"\n',
            "server name",
        ),
        (
            f'[servers.t]\ncommand = ["x"]\ncredential = {{ name = "c", scheme = "bearer" }}\n[servers.t.tools.a]\nrisk = "read"\ninput_schema_sha256 = "{HASH}"\n',
            "stdio server",
        ),
        (
            f'[servers.t]\nurl = "https://x/mcp"\nsecret = "hunter2"\n[servers.t.tools.a]\nrisk = "read"\ninput_schema_sha256 = "{HASH}"\n',
            "unknown key servers.t.secret",
        ),
    ],
)
def test_mistakes_are_named(text: str, expected: str) -> None:
    assert any(expected in message for message in problems_of(text)), problems_of(text)


def test_a_bundle_with_servers_needs_the_tool_model_in_its_schema(tmp_path: Path) -> None:
    with pytest.raises(BundleInvalid) as info:
        build(write_bundle(tmp_path / "a", {"mcp_servers.toml": SERVERS}))
    assert any('action "CallTool"' in str(p) for p in info.value.problems)
    built = build(
        write_bundle(tmp_path / "b", {"mcp_servers.toml": SERVERS, "schema.cedarschema": SCHEMA + TOOL_SCHEMA})
    )
    assert built.contents.mcp_servers.tool("desk.close_ticket") is not None
    assert "mcp_servers.toml" in built.artifact.digests  # signed like every other file


def test_the_schema_hash_ignores_key_order_and_spacing() -> None:
    assert schema_sha256({"type": "object", "properties": {"a": {"type": "integer"}}}) == schema_sha256(
        {"properties": {"a": {"type": "integer"}}, "type": "object"}
    )
    assert schema_sha256({"type": "object"}) != schema_sha256({"type": "object", "required": ["a"]})
