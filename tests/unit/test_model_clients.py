"""The SDK's model clients: the official clients pointed at the sidecar's gateway, with the
local API token and the attribution headers, and no provider key anywhere."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

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


def test_a_gateway_on_a_unix_socket_is_reached_through_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The client's request arrives at the socket, with the token and the attribution headers."""
    path = tmp_path / "gateway.sock"
    monkeypatch.setenv("MESHWARDEN_GATEWAY", f"unix:{path}")
    gateway = model_clients.gateway_url(None)
    assert gateway == f"unix:{path}"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    received: list[bytes] = []

    def answer_once() -> None:
        connection, _ = server.accept()
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(65536)
            received.append(request)
            body = json.dumps({"error": {"message": "stand-in", "type": "invalid_request_error"}}).encode()
            connection.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n")
            connection.sendall(b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))

    worker = threading.Thread(target=answer_once)
    worker.start()
    client = model_clients.openai_client(gateway, "local-token", {"x-meshwarden-session-id": "s-7"}, sync=True)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    worker.join(10)
    server.close()
    head = received[0].decode().lower()
    assert head.startswith("post /v1/chat/completions ") and "authorization: bearer local-token" in head
    assert "x-meshwarden-session-id: s-7" in head
    claude = model_clients.anthropic_client(gateway, "local-token", {})
    assert str(claude.base_url) == model_clients.SOCKET_BASE
