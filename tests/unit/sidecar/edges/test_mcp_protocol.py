"""Which MCP revision a request speaks, and the errors for those the endpoint does not."""

from __future__ import annotations

import pytest

from meshwarden.sidecar.edges.mcp_protocol import (
    HEADER_MISMATCH,
    INVALID_REQUEST,
    UNSUPPORTED_PROTOCOL_VERSION,
    VERSION_META,
    Era,
    RpcError,
    era_of,
    negotiated,
)


def test_the_current_revision_travels_in_meta() -> None:
    era = era_of("tools/list", {"_meta": {VERSION_META: "2026-07-28"}}, {"MCP-Protocol-Version": "2026-07-28"})
    assert era.modern and era.version == "2026-07-28"


def test_the_previous_revision_comes_by_handshake_and_header() -> None:
    assert not era_of("initialize", {"protocolVersion": "2025-11-25"}, {}).modern
    assert era_of("tools/call", {}, {"MCP-Protocol-Version": "2025-11-25"}).version == "2025-11-25"
    assert negotiated("2025-11-25") == "2025-11-25" and negotiated("2024-11-05") == "2025-11-25"


@pytest.mark.parametrize(
    ("method", "params", "headers", "code", "status"),
    [
        ("tools/list", {"_meta": {VERSION_META: "2030-01-01"}}, {}, UNSUPPORTED_PROTOCOL_VERSION, 400),
        (
            "tools/list",
            {"_meta": {VERSION_META: "2026-07-28"}},
            {"MCP-Protocol-Version": "2025-11-25"},
            HEADER_MISMATCH,
            400,
        ),
        ("tools/list", {"_meta": {VERSION_META: "2026-07-28"}}, {"Mcp-Method": "tools/call"}, HEADER_MISMATCH, 400),
        ("tools/list", {}, {"MCP-Protocol-Version": "2024-11-05"}, INVALID_REQUEST, 400),
    ],
)
def test_versions_it_does_not_speak_get_the_specs_errors(
    method: str, params: dict[str, object], headers: dict[str, str], code: int, status: int
) -> None:
    with pytest.raises(RpcError) as info:
        era_of(method, params, headers)
    assert info.value.code == code
    assert info.value.http_status(Era("2025-11-25", False)) == status


def test_the_unsupported_version_error_names_both_sides() -> None:
    with pytest.raises(RpcError) as info:
        era_of("server/discover", {"_meta": {VERSION_META: "2030-01-01"}}, {})
    assert info.value.data == {"supported": ["2026-07-28"], "requested": "2030-01-01"}
    assert "2025-11-25" in info.value.message
