"""Property tests of the sidecar's HTTP gateway as a process: hypothesis sends generated OpenAI
and Anthropic request bodies to the model gateway (/v1/), and JSON-RPC messages to the MCP
endpoint (/mcp), over real sockets, with the agent's token. Whatever arrives, the answer comes
within its time, with a status that route may give (never 500), in the shape the client's SDK
reads: OpenAI's `{"error": {message, type}}`, Anthropic's `{"type": "error", "error": {type,
message}}`, JSON-RPC 2.0 with the error code that goes with the status (never -32603, the
sidecar's own fault); nothing leaves a traceback in the sidecar's log, and a good call still
works afterwards.

One mesh for the module (a registry, a sidecar, a provider stand-in, a tickets MCP server),
examples bounded so the module stays within about 30 s. Hypothesis drives a sync HTTP client
from a worker thread while the event loop keeps the processes' pipes going.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2
import pytest
import pytest_asyncio

pytest.importorskip(
    "hypothesis", reason="hypothesis (the test extra) is not installed: regenerate the lock (python3 dev.py lock)"
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.bundles import ALLOW_ALL
from tests.integration.mesh import LocalMesh
from tests.integration.test_mcp_gateway import CLOSE_TICKET, READ_TICKET, SERVER
from tests.integration.test_model_gateway import PROVIDER_KEY, _prices

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
TOKEN = "agent-local-token-" + "p" * 24
TIMEOUT_S = 30.0  # per request: far beyond any answer, so a hang fails the test instead of stalling it
MAX_BODY = 256 * 1024

# The error `type` each status has in each provider's documented error shape.
OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
}
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}
# The JSON-RPC error codes each HTTP status of the MCP endpoint goes with (MCP's streamable HTTP
# transport; 200 carries every error of the revision before, 2025-11-25).
RPC_CODES = {
    400: {-32700, -32600, -32602, -32020, -32022},
    404: {-32601},
    413: {-32600},
    200: {-32600, -32601, -32602, -32000, -32001, -32020, -32022},
}

PRINTABLE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=150).map(str.strip)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
counts = st.integers(-10, 2**70) | json_values
messages = (
    st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant", "system", "tool"]) | st.text(max_size=8)},
            optional={"content": st.text(max_size=60) | json_values},
        ),
        max_size=3,
    )
    | json_values
)
model_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["gpt-test", "claude-test", "embed-test", "nope"]) | st.text(max_size=200) | json_values},
    optional={
        "messages": messages,
        "input": st.text(max_size=60) | json_values,
        "stream": st.booleans() | json_values,
        "max_tokens": counts,
        "max_completion_tokens": counts,
        "max_output_tokens": counts,
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans() | json_values}) | json_values,
        "system": st.text(max_size=30) | json_values,
        "tools": json_values,
    },
)
# JSON texts Python's json accepts but JSON does not, nesting past any limit, truncations.
hostile_json = st.sampled_from([b'{"model": NaN}', b'{"model": 1e999}', b"[" * 5000, b'{"a":1,"a":2}', b"\xff\xfe"])


def bodies(documents: st.SearchStrategy[object]) -> st.SearchStrategy[bytes]:
    encoded = documents.map(lambda d: json.dumps(d).encode())
    return st.one_of(
        encoded,
        encoded.map(lambda b: b[: len(b) // 2]),
        json_values.map(lambda d: json.dumps(d).encode()),
        st.binary(max_size=200),
        hostile_json,
    )


headers = st.fixed_dictionaries(
    {},
    optional={
        "x-meshwarden-session-id": PRINTABLE,
        "x-meshwarden-workflow-id": PRINTABLE,
        "x-meshwarden-approval-wait": st.sampled_from(["none", "deadline"]) | PRINTABLE,
        "x-meshwarden-approval-id": st.just("ap-0123456789ab") | PRINTABLE,
        "anthropic-version": PRINTABLE,
    },
)

ids = st.integers() | st.text(max_size=300) | st.none() | st.booleans() | st.floats() | json_values
versions = st.sampled_from(["2026-07-28", "2025-11-25", "2024-11-05", "2099-01-01"]) | json_values
meta = st.fixed_dictionaries(
    {},
    optional={
        "io.modelcontextprotocol/protocolVersion": versions,
        "meshwarden/session_id": PRINTABLE | json_values,
        "meshwarden/approval_wait": st.just("none") | json_values,
        "meshwarden/approval_id": PRINTABLE | json_values,
        "meshwarden/timeout_s": st.floats() | st.integers(-5, 10**6) | json_values,
    },
)
tool_params = (
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.sampled_from(["tickets.read_ticket", "tickets.close_ticket", "tickets", "x.y"])
            | st.text(max_size=100)
            | json_values,
            "arguments": st.fixed_dictionaries(
                {}, optional={"ticket_id": counts, "reason": st.text(max_size=30) | json_values}
            )
            | json_values,
            "_meta": meta | json_values,
            "protocolVersion": versions,
            "cursor": json_values,
        },
    )
    | json_values
)
rpc_messages = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0") | json_values},
    optional={
        "id": ids,
        "method": st.sampled_from(
            ["initialize", "server/discover", "ping", "tools/list", "tools/call", "resources/list"]
        )
        | st.text(max_size=40)
        | json_values,
        "params": tool_params,
    },
)
mcp_headers = st.fixed_dictionaries(
    {},
    optional={
        "MCP-Protocol-Version": st.sampled_from(["2026-07-28", "2025-11-25"]) | PRINTABLE,
        "Mcp-Method": st.sampled_from(["tools/call", "ping"]) | PRINTABLE,
        "x-meshwarden-session-id": PRINTABLE,
        "x-meshwarden-timeout-s": st.sampled_from(["5", "0", "-1", "nan", "1e9"]) | PRINTABLE,
    },
)


@dataclass
class Gateway:
    mesh: LocalMesh
    base: str

    def post(self, path: str, body: bytes, extra: dict[str, str]) -> httpx2.Response:
        sent = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", **extra}
        with httpx2.Client(timeout=TIMEOUT_S) as http:
            return http.post(self.base + path, content=body, headers=sent)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    workdir = tmp_path_factory.mktemp("gateway-properties")
    mesh = LocalMesh(workdir)
    tickets = subprocess.Popen([sys.executable, str(SERVER), "--http", "0"], stdout=subprocess.PIPE, text=True)
    try:
        await mesh.start_registry()
        assert tickets.stdout is not None
        ready = await asyncio.to_thread(tickets.stdout.readline)
        assert ready.startswith("ready "), ready
        provider = await mesh.start_process(
            "provider",
            [sys.executable, "-m", "meshwarden.demo.model_provider", "--key", PROVIDER_KEY],
            health_address_key=None,
        )
        up = provider.addresses["listen"]
        models = {
            "providers": {
                "up": {"api": "openai", "base_url": f"http://{up}/v1", "credential": {"env": "STANDIN_KEY"}},
                "claude": {"api": "anthropic", "base_url": f"http://{up}", "credential": {"env": "STANDIN_KEY"}},
            },
            "models": {
                "gpt-test": _prices("gpt-test", "up"),
                "embed-test": _prices("embed-test", "up"),
                "claude-test": _prices("claude-test", "claude"),
            },
        }
        servers = f"""
[servers.tickets]
url = "{ready.split()[1]}"
[servers.tickets.tools.read_ticket]
risk = "read"
input_schema_sha256 = "{READ_TICKET}"
[servers.tickets.tools.close_ticket]
risk = "destructive"
input_schema_sha256 = "{CLOSE_TICKET}"
"""
        policies = {"allow-all.cedar": ALLOW_ALL}
        await mesh.push_bundle(mesh.bundles.make(2, policies, models=json.dumps(models), mcp_servers=servers))
        token_file = workdir / "agent.token"
        token_file.write_text(TOKEN)
        os.chmod(token_file, 0o600)
        sidecar = await mesh.sidecar(
            "support",
            *("--api-token-file", str(token_file), "--max-payload-bytes", str(MAX_BODY)),
            env={"STANDIN_KEY": PROVIDER_KEY},
        )
        gateway = Gateway(mesh, f"http://{sidecar.addresses['gateway']}")
        for _ in range(100):  # the bundle reaches the sidecar (the default deny ends)
            answer = await asyncio.to_thread(
                gateway.post, "/v1/embeddings", json.dumps({"model": "embed-test", "input": "x"}).encode(), {}
            )
            if answer.status_code == 200:
                break
            await asyncio.sleep(0.1)
        yield gateway
    finally:
        await mesh.close()
        tickets.terminate()
        await asyncio.to_thread(tickets.wait, 10)


def check_provider_shaped(answer: httpx2.Response, anthropic: bool) -> None:
    status = answer.status_code
    types = ANTHROPIC_TYPES if anthropic else OPENAI_TYPES
    assert status == 200 or status in types, (status, answer.text[:300])
    if status == 200:
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            return  # a stream the provider answered: its events are the provider's own
        assert isinstance(answer.json(), dict)
        return
    body = answer.json()
    error = body["error"]
    if anthropic:
        assert body["type"] == "error", body
    assert error["type"] == types[status] and isinstance(error["message"], str) and error["message"], body


async def test_model_gateway_answers_any_body_in_the_providers_shape(gateway: Gateway) -> None:
    @EXAMPLES
    @given(st.sampled_from(["/v1/chat/completions", "/v1/responses", "/v1/embeddings"]), bodies(model_bodies), headers)
    def openai_style(path: str, body: bytes, extra: dict[str, str]) -> None:
        check_provider_shaped(gateway.post(path, body, extra), anthropic=False)

    @EXAMPLES
    @given(bodies(model_bodies), headers)
    def anthropic_style(body: bytes, extra: dict[str, str]) -> None:
        check_provider_shaped(gateway.post("/v1/messages", body, extra), anthropic=True)

    await asyncio.to_thread(openai_style)
    await asyncio.to_thread(anthropic_style)
    too_big = await asyncio.to_thread(gateway.post, "/v1/messages", b"x" * (MAX_BODY + 1), {})
    check_provider_shaped(too_big, anthropic=True)
    assert too_big.status_code == 413
    good = {"model": "gpt-test", "messages": [{"role": "user", "content": "still there"}]}
    answer = await asyncio.to_thread(gateway.post, "/v1/chat/completions", json.dumps(good).encode(), {})
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "You said: still there"
    assert "Traceback" not in gateway.mesh.logs()


async def test_mcp_endpoint_answers_any_message_with_a_json_rpc_error_of_the_right_status(gateway: Gateway) -> None:
    @EXAMPLES
    @given(bodies(rpc_messages) | st.lists(rpc_messages, max_size=2).map(lambda m: json.dumps(m).encode()), mcp_headers)
    def post(body: bytes, extra: dict[str, str]) -> None:
        answer = gateway.post("/mcp", body, extra)
        status = answer.status_code
        if status == 202:  # a notification, or a response to nothing the endpoint asked
            assert answer.content == b""
            return
        assert status in RPC_CODES, (status, answer.text[:300])
        message = answer.json()
        assert message["jsonrpc"] == "2.0" and "id" in message, message
        if "result" in message:
            assert status == 200 and isinstance(message["result"], dict), message
            return
        error = message["error"]
        assert isinstance(error["message"], str) and error["message"], message
        assert error["code"] in RPC_CODES[status], (status, message)

    await asyncio.to_thread(post)
    ping = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "tickets.read_ticket"}}
    ping["params"]["arguments"] = {"ticket_id": 3}  # type: ignore[index]
    answer = await asyncio.to_thread(gateway.post, "/mcp", json.dumps(ping).encode(), {})
    assert answer.status_code == 200 and "ticket 3" in answer.text
    assert "Traceback" not in gateway.mesh.logs()
