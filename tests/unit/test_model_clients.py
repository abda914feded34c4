"""The SDK's model clients: the official clients pointed at the sidecar's gateway, with the
local API token and the attribution headers, and no provider key anywhere."""

from __future__ import annotations

import anthropic
import openai
import pytest

from meshwarden import model_clients


def test_the_gateway_address_is_given_or_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHWARDEN_GATEWAY", raising=False)
    assert model_clients.gateway_url(None) == "http://127.0.0.1:7413"
    assert model_clients.gateway_url("127.0.0.1:9000/") == "http://127.0.0.1:9000"
    monkeypatch.setenv("MESHWARDEN_GATEWAY", "http://10.0.0.5:7413")
    assert model_clients.gateway_url(None) == "http://10.0.0.5:7413"


def test_clients_carry_the_token_and_the_attribution_headers() -> None:
    headers = model_clients.attribution("s-1", "wf-1", "", "call-9")
    assert headers == {
        "x-meshwarden-session-id": "s-1",
        "x-meshwarden-workflow-id": "wf-1",
        "x-meshwarden-parent-call-id": "call-9",
    }
    client = model_clients.openai_client("http://127.0.0.1:7413", "local-token", headers, max_retries=0)
    assert isinstance(client, openai.AsyncOpenAI) and str(client.base_url) == "http://127.0.0.1:7413/v1/"
    assert client.api_key == "local-token" and client.default_headers["x-meshwarden-session-id"] == "s-1"
    claude = model_clients.anthropic_client("http://127.0.0.1:7413", "", headers, sync=True)
    assert isinstance(claude, anthropic.Anthropic) and claude.default_headers["x-meshwarden-parent-call-id"] == "call-9"
