"""MCP servers' secrets: read on the sidecar's host from a 0600 file or a variable, never from
the bundle, and never repeated in an error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshwarden.errors import ToolServerUnavailable
from meshwarden.policy_bundle.mcp_servers import CredentialRef
from meshwarden.sidecar.hops.mcp_credentials import CredentialSource, read_secret, upstream_for

REF = CredentialRef(name="tickets-token", scheme="bearer")
SECRET = "s3cret-" + "x" * 20


def test_a_private_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "tickets-token").write_text(SECRET + "\n")
    os.chmod(tmp_path / "tickets-token", 0o600)
    assert read_secret(REF, CredentialSource(tmp_path), "tickets") == SECRET


def test_a_file_others_may_read_is_refused_without_showing_it(tmp_path: Path) -> None:
    (tmp_path / "tickets-token").write_text(SECRET)
    os.chmod(tmp_path / "tickets-token", 0o644)
    with pytest.raises(ToolServerUnavailable) as info:
        read_secret(REF, CredentialSource(tmp_path), "tickets")
    assert "chmod 600" in info.value.message and SECRET not in info.value.message


def test_the_variable_is_the_fallback_and_absence_says_where_to_put_it(tmp_path: Path) -> None:
    assert read_secret(REF, CredentialSource(tmp_path, {"TICKETS_TOKEN": SECRET}), "tickets") == SECRET
    with pytest.raises(ToolServerUnavailable) as info:
        read_secret(REF, CredentialSource(tmp_path, {}), "tickets")
    assert "MESHWARDEN_TOOL_CREDENTIAL_TICKETS_TOKEN" in info.value.message
    assert str(tmp_path / "tickets-token") in info.value.message


def test_each_scheme_goes_upstream_its_own_way() -> None:
    assert upstream_for(REF, SECRET, "").headers == {"Authorization": f"Bearer {SECRET}"}
    api_key = CredentialRef(name="k", scheme="api_key", header="x-api-key")
    assert upstream_for(api_key, SECRET, "").headers == {"x-api-key": SECRET}
    env = CredentialRef(name="k", scheme="env", env="DESK_TOKEN")
    assert upstream_for(env, SECRET, "").env == {"DESK_TOKEN": SECRET} and not upstream_for(env, SECRET, "").headers
    assert SECRET not in repr(upstream_for(REF, SECRET, ""))
