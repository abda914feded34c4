"""The model gateway with real processes: the official `openai` and `anthropic` clients talk to
a sidecar's HTTP gateway, which calls a provider stand-in process (meshwarden.demo.model_provider)
with the key only the sidecar holds.

One mesh per test: a registry, a sidecar for agent `support` (no agent process is needed to
make model calls), stand-in providers, and a signed bundle whose models.json declares them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import anthropic
import grpc
import openai
import pytest

from meshwarden.supervise import Child
from meshwarden.v1 import controls_pb2 as K
from meshwarden.v1 import receipts_pb2
from tests.integration.mesh import LocalMesh
from tests.integration.test_controls import kill, lift
from tests.integration.test_usage import until

pytestmark = pytest.mark.integration

PROVIDER_KEY = "sk-standin-" + "7f3a9c" * 6  # what only the sidecar may hold
AGENT_TOKEN = "agent-local-token-" + "q" * 24  # the agent's credential for its sidecar
SESSION = {"x-meshwarden-session-id": "s-model-1", "x-meshwarden-workflow-id": "wf-model"}

POLICIES = {
    "allow-all.cedar": '@id("allow-all")\npermit (principal, action, resource);\n',
    "models.cedar": (
        '@id("no-forbidden-model")\n@reason("forbidden-model is reserved for the finance team")\n'
        'forbid (principal, action == Action::"CallModel", resource == Model::"forbidden-model");\n'
    ),
}


def _prices(model: str, provider: str, **extra: object) -> dict[str, object]:
    return {
        "provider": provider,
        "upstream_model": model.split("@")[0],
        "tier": "small",
        "context_tokens": 8000,
        "default_max_tokens": 64,
        "max_output_tokens": 256,
        "price_micro_usd_per_mtok": {"input": 1_000_000, "output": 2_000_000, "cached_input": 500_000},
        **extra,
    }


def catalog(up: str, down: str, cut: str, key_file: Path) -> str:
    """Providers: `up` (OpenAI style, key from the environment), `claude` (Anthropic style at the
    same stand-in, key from a 0600 file), `down` (answers 503), `cut` (drops every stream after
    4 events). `primary` is served by `down` and falls back to `backup` on `up`."""
    return json.dumps(
        {
            "providers": {
                "up": {"api": "openai", "base_url": f"http://{up}/v1", "credential": {"env": "STANDIN_KEY"}},
                "claude": {"api": "anthropic", "base_url": f"http://{up}", "credential": {"file": str(key_file)}},
                "down": {"api": "openai", "base_url": f"http://{down}/v1", "credential": {"env": "STANDIN_KEY"}},
                "cut": {"api": "openai", "base_url": f"http://{cut}/v1", "credential": {"env": "STANDIN_KEY"}},
            },
            "models": {
                "gpt-test": _prices("gpt-test", "up"),
                "embed-test": _prices("embed-test", "up"),
                "claude-test": _prices("claude-test", "claude"),
                "forbidden-model": _prices("forbidden-model", "up"),
                "primary": _prices("primary", "down", fallbacks=["backup"]),
                "backup": _prices("backup", "up"),
                "cut-test": _prices("cut-test", "cut"),
                "slow-test": _prices("slow-test", "up"),
            },
        }
    )


@dataclass
class Gateway:
    mesh: LocalMesh
    sidecar: Child
    seen: Path  # what reached the working provider: headers and bodies
    clients: list[openai.AsyncOpenAI | anthropic.AsyncAnthropic] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://{self.sidecar.addresses['gateway']}"

    def openai(self, **headers: str) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(
            base_url=f"{self.base}/v1", api_key=AGENT_TOKEN, max_retries=0, default_headers=headers or None
        )
        self.clients.append(client)
        return client

    def anthropic(self, api_key: str = AGENT_TOKEN, **headers: str) -> anthropic.AsyncAnthropic:
        client = anthropic.AsyncAnthropic(
            base_url=self.base, api_key=api_key, max_retries=0, default_headers=headers or None
        )
        self.clients.append(client)
        return client

    async def receipts(self, count: int) -> list[receipts_pb2.Receipt]:
        found: list[receipts_pb2.Receipt] = []

        async def shipped() -> bool:
            try:
                reply = await self.mesh.ask_receipts(
                    "GetSession", receipts_pb2.GetSessionRequest(session_id="s-model-1")
                )
            except grpc.aio.AioRpcError as err:
                if err.code() is grpc.StatusCode.NOT_FOUND:  # none shipped yet
                    return False
                raise
            found[:] = reply.receipts
            return len(found) >= count

        await until(shipped, f"{count} model receipts reaching the registry")
        return found


@pytest.fixture
async def gateway(mesh: LocalMesh, tmp_path: Path) -> AsyncIterator[Gateway]:
    seen = tmp_path / "provider-seen.jsonl"
    standin = [sys.executable, "-m", "meshwarden.demo.model_provider", "--key", PROVIDER_KEY]
    up = await mesh.start_process(
        "provider-up", [*standin, "--seen", str(seen), "--slow-model", "slow-test"], health_address_key=None
    )
    down = await mesh.start_process("provider-down", [*standin, "--fail", "503"], health_address_key=None)
    cut = await mesh.start_process("provider-cut", [*standin, "--cut-after", "4"], health_address_key=None)
    key_file = tmp_path / "claude.key"
    key_file.write_text(PROVIDER_KEY + "\n")
    key_file.chmod(0o600)
    await mesh.push_bundle(
        mesh.bundles.make(
            2,
            POLICIES,
            models=catalog(up.addresses["listen"], down.addresses["listen"], cut.addresses["listen"], key_file),
        )
    )
    token_file = tmp_path / "agent.token"
    token_file.write_text(AGENT_TOKEN)
    token_file.chmod(0o600)
    sidecar = await mesh.sidecar(
        "support",
        "--api-token-file",
        str(token_file),
        "--receipt-ship-interval-s",
        "0.2",
        env={"STANDIN_KEY": PROVIDER_KEY},
    )
    gateway = Gateway(mesh, sidecar, seen)
    yield gateway
    for client in gateway.clients:
        await client.close()


async def test_openai_and_anthropic_clients_stream_and_not_with_measured_usage(gateway: Gateway) -> None:
    client = gateway.openai(**SESSION)
    chat = await client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "where is my parcel"}]
    )
    assert chat.choices[0].message.content == "You said: where is my parcel"
    assert chat.usage is not None and (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (4, 6)

    # A stream whose client did not ask for usage: the gateway asks, and keeps the usage chunk to itself.
    chunks = [
        c
        async for c in await client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "one two three"}], stream=True
        )
    ]
    assert all(c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "You said: one two three"

    response = await client.responses.create(model="gpt-test", input="hello there")
    assert response.output_text == "You said: hello there" and response.usage is not None
    streamed = [e async for e in await client.responses.create(model="gpt-test", input="hi", stream=True)]
    assert (
        "".join(getattr(e, "delta", "") for e in streamed if e.type == "response.output_text.delta") == "You said: hi"
    )
    assert streamed[-1].type == "response.completed"

    embedding = await client.embeddings.create(model="embed-test", input=["a b c", "d"])
    assert len(embedding.data) == 2 and len(embedding.data[0].embedding) == 8

    claude = gateway.anthropic(**SESSION)
    message = await claude.messages.create(
        model="claude-test", max_tokens=100, messages=[{"role": "user", "content": "refund please"}]
    )
    assert message.content[0].type == "text" and message.content[0].text == "You said: refund please"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (2, 4)
    async with claude.messages.stream(
        model="claude-test", max_tokens=100, messages=[{"role": "user", "content": "stream it"}]
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "You said: stream it" and final.usage.output_tokens == 4

    # Every call has a receipt of kind model with the usage the gateway measured, priced by the
    # catalog (1 USD per million input tokens, 2 per million output: 4 in + 6 out = 16 micro-USD).
    receipts = await gateway.receipts(7)
    by_api = {}
    for r in receipts:
        assert r.call_kind == "model" and r.status == "OK" and r.caller_agent == "support"
        by_api.setdefault((r.model_api, r.model_streamed), r)
    first_chat = by_api[("openai.chat", False)]
    assert (first_chat.usage.input_tokens, first_chat.usage.output_tokens, first_chat.usage.cost_micro_usd) == (
        4,
        6,
        16,
    )
    assert first_chat.model_provider == "up" and first_chat.model_response == "gpt-test"
    assert first_chat.max_output_tokens == 64 and not first_chat.attributed_to_agent_only  # the catalog's default cap
    streamed_chat = by_api[("openai.chat", True)]
    assert (streamed_chat.usage.input_tokens, streamed_chat.usage.output_tokens) == (
        3,
        5,
    ) and not streamed_chat.model_stream_cut
    claude_stream = by_api[("anthropic.messages", True)]
    assert (claude_stream.usage.input_tokens, claude_stream.usage.output_tokens) == (2, 4)
    assert by_api[("openai.responses", True)].usage.output_tokens == 3
    assert by_api[("openai.embeddings", False)].usage.input_tokens == 4
    costs = await gateway.mesh.ask_receipts("Costs", receipts_pb2.CostsRequest(by="agent"))
    assert {r.key: r.calls for r in costs.rows}.get("support") == 7  # model spend counts for the caller

    # What reached the provider: the sidecar's key, never the agent's token, and the output cap.
    seen = [json.loads(line) for line in gateway.seen.read_text().splitlines()]
    assert len(seen) == 7
    for request in seen:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert AGENT_TOKEN not in json.dumps(request)
        assert headers.get("authorization") == f"Bearer {PROVIDER_KEY}" or headers.get("x-api-key") == PROVIDER_KEY
        assert not any(k.startswith("x-meshwarden") for k in headers)
    assert json.loads(seen[0]["body"])["max_completion_tokens"] == 64


async def test_refusals_come_in_each_providers_shape_with_what_to_do(gateway: Gateway) -> None:
    client = gateway.openai()
    with pytest.raises(openai.NotFoundError) as unknown:
        await client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    assert unknown.value.code == "unknown_model" and "gpt-test" in unknown.value.message
    assert "models.json" in unknown.value.message

    with pytest.raises(openai.PermissionDeniedError) as denied:
        await client.chat.completions.create(model="forbidden-model", messages=[{"role": "user", "content": "x"}])
    assert "reserved for the finance team" in denied.value.message and denied.value.code == "policy_denied"

    with pytest.raises(openai.BadRequestError) as missing:
        await client.chat.completions.create(model="gpt-test", messages="not a list")  # type: ignore[arg-type]
    assert missing.value.param == "messages"

    with pytest.raises(openai.BadRequestError) as wrong_api:  # an Anthropic model asked through the OpenAI API
        await client.chat.completions.create(model="claude-test", messages=[{"role": "user", "content": "x"}])
    assert "/v1/messages" in wrong_api.value.message

    async with aiohttp.ClientSession(gateway.base, headers={"Authorization": f"Bearer {AGENT_TOKEN}"}) as raw:
        async with raw.post("/v1/chat/completions", data=b"{not json") as malformed:
            assert malformed.status == 400 and "not valid JSON" in (await malformed.json())["error"]["message"]
        async with raw.post("/v1/messages", data=b"x" * (5 * 1024 * 1024)) as big:
            shaped = await big.json()
            assert big.status == 413 and shaped["type"] == "error"
            assert shaped["error"]["type"] == "request_too_large" and "limit" in shaped["error"]["message"]
        async with raw.post(
            "/v1/chat/completions",
            headers={"x-meshwarden-session-id": "has spaces"},
            json={"model": "gpt-test", "messages": []},
        ) as bad_header:
            assert bad_header.status == 400
            assert "x-meshwarden-session-id" in (await bad_header.json())["error"]["message"]

    claude = gateway.anthropic()
    with pytest.raises(anthropic.NotFoundError) as claude_unknown:
        await claude.messages.create(model="claude-nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert claude_unknown.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.AuthenticationError):
        await gateway.anthropic(api_key="wrong").messages.create(
            model="claude-test", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )

    # A provider down (HTTP 503): the declared fallback answers, and the receipt says so.
    fell_back = await gateway.openai(**SESSION).chat.completions.create(
        model="primary", messages=[{"role": "user", "content": "are you there"}]
    )
    assert fell_back.choices[0].message.content == "You said: are you there" and fell_back.model == "backup"
    [receipt] = await gateway.receipts(1)
    assert receipt.model_fallback_from == "down/primary" and receipt.model_provider == "up"
    assert receipt.model_requested == "primary" and receipt.usage.cost_micro_usd > 0


async def test_a_kill_by_model_or_provider_stops_calls_and_no_key_shows_anywhere(gateway: Gateway) -> None:
    client = gateway.openai(**SESSION)
    ask = {"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]}
    await client.chat.completions.create(**ask)  # type: ignore[call-overload]
    switch = await kill(gateway.mesh, K.SCOPE_KIND_MODEL, "gpt-test", "runaway loop on gpt-test")
    with pytest.raises(openai.PermissionDeniedError) as killed:
        await client.chat.completions.create(**ask)  # type: ignore[call-overload]
    assert switch.kill_switch.id in killed.value.message and "runaway loop" in killed.value.message
    await client.embeddings.create(model="embed-test", input="still fine")  # another model goes on
    await lift(gateway.mesh, switch.kill_switch.id)
    by_provider = await kill(gateway.mesh, K.SCOPE_KIND_PROVIDER, "claude", "provider incident")
    with pytest.raises(anthropic.PermissionDeniedError):
        await gateway.anthropic(**SESSION).messages.create(
            model="claude-test", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    await lift(gateway.mesh, by_provider.kill_switch.id)

    # A kill by model cancels a stream in flight: the client's stream ends there, the receipt names
    # the switch, and the call is charged for what streamed.
    async def stream_slowly() -> list[str]:
        stream = await client.chat.completions.create(
            model="slow-test", messages=[{"role": "user", "content": "word " * 30}], stream=True
        )
        return [c.choices[0].delta.content or "" async for c in stream]

    streaming = asyncio.create_task(stream_slowly())
    await asyncio.sleep(1.0)  # a few of its 33 words have streamed (one every 0.2 s)
    in_flight = await kill(gateway.mesh, K.SCOPE_KIND_MODEL, "slow-test", "stop that generation")
    words_seen = await asyncio.wait_for(streaming, 15)
    assert 0 < len(words_seen) < 33
    await lift(gateway.mesh, in_flight.kill_switch.id)

    # A provider that drops the stream midway: the client's stream ends, and the call is charged
    # for what it used as well as the gateway can know it (the input estimated from the prompt's
    # text, the output counted from the text that came), the receipt saying both are estimates.
    words = "one two three four five six seven eight"
    chunks = [
        c
        async for c in await client.chat.completions.create(
            model="cut-test", messages=[{"role": "user", "content": words}], stream=True
        )
    ]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "You said: one"  # 4 events: role, 3 words
    receipts = await gateway.receipts(6)
    [stopped] = [r for r in receipts if r.model_requested == "slow-test"]
    assert stopped.kill_switch_id == in_flight.kill_switch.id and stopped.status == "FAILED_PRECONDITION"
    assert stopped.model_stream_cut and stopped.usage.output_tokens >= 1 and stopped.output_tokens_estimated
    [cut] = [r for r in receipts if r.model_requested == "cut-test"]
    assert cut.model_stream_cut and cut.status == "OK" and cut.usage.cost_micro_usd > 0
    assert cut.input_tokens_estimated and cut.output_tokens_estimated
    # "You said: one" streamed: 3 tokens; the prompt is 8 words (the stand-in counts words as
    # tokens): its estimate from the text, not from the request's bytes (over 30 here)
    assert 3 <= cut.usage.output_tokens <= 6 and 8 <= cut.usage.input_tokens <= 20
    assert not any(r.input_tokens_estimated or r.output_tokens_estimated for r in receipts if not r.model_stream_cut)

    # The provider key is in nothing the agent or the operator can see: answers, receipts,
    # logs of every process but the provider's own, and every file of the registry and sidecar.
    await gateway.mesh.close()
    visible = [c.stderr_text() for c in gateway.mesh.children if not c.name.split("-", 1)[1].startswith("provider")]
    for root in (gateway.mesh.registry_data_dir, gateway.mesh.workdir / "sidecars", gateway.mesh.workdir / "logs"):
        for path in root.rglob("*"):
            if path.is_file() and "provider" not in path.name:
                visible.append(path.read_bytes().decode("latin-1"))
    assert visible and not any(PROVIDER_KEY in text or PROVIDER_KEY[:20] in text for text in visible)
    assert os.environ.get("STANDIN_KEY") is None  # the test process never held it in its environment either
