"""Traces into a real OTLP receiver and metrics from the real admin ports, with real processes."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

import meshwarden
from meshwarden import errors
from meshwarden.trace_context import format_trace_id, session_trace_id
from tests.integration.bundles import ALLOW_ALL
from tests.integration.mesh import LocalMesh
from tests.integration.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.unit.test_deploy_observability import referenced_metrics

pytestmark = pytest.mark.integration


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    otlp = OtlpReceiver()
    await otlp.start()
    try:
        yield otlp
    finally:
        await otlp.stop()


def otel_env(receiver: OtlpReceiver, **more: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50", **more}


async def test_one_trace_spans_three_agents_and_both_sidecars_of_every_hop(
    mesh: LocalMesh, receiver: OtlpReceiver
) -> None:
    mesh.sidecar_env = otel_env(receiver)
    side_a = await mesh.sidecar("a")
    side_b = await mesh.sidecar("b")
    await mesh.agent(side_b, "1.0.0", "--relay-as", "b.relay")
    side_c = await mesh.sidecar("c")
    await mesh.agent(side_c, "2.0.0", "--relay-as", "c.relay")
    session = f"s-{uuid.uuid4().hex}"

    async with meshwarden.Client(side_a.addresses["listen"]) as agent_a:  # the test is agent a
        result = await agent_a.invoke(
            "b.relay", {"to": "c.relay"}, session_id=session, workflow_id="wf-trace", timeout=10
        )

    trace_id = format_trace_id(session_trace_id(session))
    seen_b, seen_c = result.value["seen"]
    assert (seen_b["agent"], seen_c["agent"]) == ("b", "c")
    assert seen_b["trace_id"] == seen_c["trace_id"] == trace_id  # the agents' side, without an SDK

    spans = await receiver.wait_for(lambda got: len([s for s in got if s.trace_id == trace_id]) >= 4)
    mine = [s for s in spans if s.trace_id == trace_id]
    by_name = {(s.service, s.span.kind, s.span.name): s for s in mine}
    client, server = trace_pb2.Span.SPAN_KIND_CLIENT, trace_pb2.Span.SPAN_KIND_SERVER
    a_client = by_name[("a-sidecar", client, "invoke_agent b.relay")]
    b_server = by_name[("b-sidecar", server, "invoke_agent b.relay")]
    b_client = by_name[("b-sidecar", client, "invoke_agent c.relay")]
    c_server = by_name[("c-sidecar", server, "invoke_agent c.relay")]
    assert len(mine) == 4
    # The tree: a's call is the root, each hop's server span is the child of its client span,
    # and b's handler (current context: b's server span) made c's call.
    assert a_client.parent_span_id == ""
    assert b_server.parent_span_id == a_client.span_id
    assert seen_b["parent_span_id"] == b_server.span_id
    assert b_client.parent_span_id == b_server.span_id
    assert c_server.parent_span_id == b_client.span_id
    assert seen_c["parent_span_id"] == c_server.span_id

    for span, callee, version in ((a_client, "b", "1.0.0"), (b_server, "b", "1.0.0"), (c_server, "c", "2.0.0")):
        attrs = span.attributes
        assert attrs["rpc.system"] == "grpc"
        assert attrs["rpc.service"] == "meshwarden.v1.Peer" and attrs["rpc.method"] == "Deliver"
        assert attrs["rpc.grpc.status_code"] == 0
        assert attrs["gen_ai.operation.name"] == "invoke_agent"
        assert attrs["gen_ai.agent.name"] == callee
        assert attrs["gen_ai.conversation.id"] == session
        assert attrs["meshwarden.session"] == session and attrs["meshwarden.workflow"] == "wf-trace"
        assert attrs["meshwarden.version"] == version
        assert attrs["meshwarden.policy.decision"] == "allow"
        assert attrs["meshwarden.policy.ids"] == ["allow-all"]
        assert attrs["meshwarden.attempt"] == 1
        assert attrs["meshwarden.call.id"] and attrs["meshwarden.instance"]
    assert a_client.attributes["meshwarden.breaker.state"] == "closed"
    assert a_client.attributes["meshwarden.call.id"] == result.call_id
    assert b_server.attributes["meshwarden.caller.agent"] == "a"
    assert b_server.attributes["meshwarden.caller.spiffe_id"] == "spiffe://meshwarden.local/agent/a"


async def test_a_failed_call_is_exported_even_when_sampling_keeps_nothing(
    mesh: LocalMesh, receiver: OtlpReceiver
) -> None:
    mesh.sidecar_env = otel_env(receiver, OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="0")
    caller = await mesh.sidecar("caller")
    callee, _agent = await mesh.pair("callee")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        ok = await client.invoke("echo", {"text": "not sampled"}, session_id="s-ok", timeout=10)
        with pytest.raises(errors.AgentFailed):
            await client.invoke("probe.fail", {}, session_id="s-failed", timeout=10)

    def failed_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
        return [s for s in spans if s.attributes.get("meshwarden.capability") == "probe.fail"]

    spans = await receiver.wait_for(lambda got: len(failed_spans(got)) >= 2)
    error = trace_pb2.Status.STATUS_CODE_ERROR
    kinds = {(s.service, s.span.status.code, s.attributes["rpc.grpc.status_code"]) for s in failed_spans(spans)}
    assert kinds == {("caller-sidecar", error, 13), ("callee-sidecar", error, 13)}
    assert all(
        s.attributes["error.type"] == "agent_failed" for s in failed_spans(spans) if s.service == "caller-sidecar"
    )
    # The successful call ended first; with nothing sampled, none of its spans were exported.
    assert [s for s in spans if s.attributes.get("meshwarden.call.id") == ok.call_id] == []


async def scrape(address: str, path: str = "/metrics") -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"http://{address}{path}") as response:
        return response.status, await response.text()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the series `name` whose labels include `labels`, or None."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


async def test_metrics_count_calls_at_both_sidecars_and_the_registry(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk")
    callee, _agent = await mesh.pair("billing")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        for n in range(3):
            await client.invoke("echo", {"n": n}, timeout=10)
        with pytest.raises(errors.UnknownCapability):
            await client.invoke("no.such.thing", {}, timeout=10)
        with pytest.raises(errors.AgentFailed):
            await client.invoke("probe.fail", {"how": "refuse"}, timeout=10)

    _, out = await scrape(caller.addresses["admin"])
    echo_out = {"direction": "outbound", "capability": "echo"}
    assert sample(out, "meshwarden_sidecar_calls_total", **echo_out, status="OK", error="") == 3
    assert sample(out, "meshwarden_sidecar_call_duration_seconds_count", **echo_out) == 3
    assert sample(out, "meshwarden_sidecar_request_bytes_total", **echo_out) == len(b'{"n":0}') * 3
    result_bytes = sample(out, "meshwarden_sidecar_result_bytes_total", **echo_out)
    assert result_bytes is not None and result_bytes > 0
    # A name the catalog never saw is not a label value of its own.
    assert sample(out, "meshwarden_sidecar_calls_total", capability="no.such.thing") is None
    assert sample(out, "meshwarden_sidecar_calls_total", capability="_other", status="NOT_FOUND") == 1
    assert sample(out, "meshwarden_sidecar_calls_total", capability="probe.fail", status="INVALID_ARGUMENT") == 1
    # A capability the catalog never saw is refused as unknown before policy decides: four
    # decisions (three echoes and probe.fail), all allowed.
    assert sample(out, "meshwarden_sidecar_policy_decisions_total", direction="outbound", decision="allow") == 4
    callee_instance = (await mesh.list_instances(agent="billing"))[0].instance_id
    assert sample(out, "meshwarden_sidecar_breaker_state", peer_instance=callee_instance, state="closed") == 1
    assert sample(out, "meshwarden_sidecar_breaker_state", peer_instance=callee_instance, state="open") == 0
    assert sample(out, "meshwarden_sidecar_bundle_revision") == 1
    assert sample(out, "meshwarden_sidecar_calls_in_flight", direction="outbound") == 0

    _, inbound = await scrape(callee.addresses["admin"])
    assert sample(inbound, "meshwarden_sidecar_calls_total", direction="inbound", capability="echo", status="OK") == 3
    assert sample(inbound, "meshwarden_sidecar_policy_decisions_total", direction="inbound", decision="allow") == 4

    assert mesh.registry is not None
    status, reg = await scrape(mesh.registry.addresses["admin"])
    assert status == 200
    assert sample(reg, "meshwarden_registry_instances", agent="billing") == 1
    assert sample(reg, "meshwarden_registry_bundle_revision") == 1
    assert sample(reg, "meshwarden_registry_bundle_pushes_total") == 1
    watchers = sample(reg, "meshwarden_registry_watchers")
    assert watchers is not None and watchers >= 2
    assert (await scrape(mesh.registry.addresses["admin"], "/readyz"))[0] == 200
    assert (await scrape(mesh.registry.addresses["admin"], "/healthz"))[0] == 200
    # deploy/prometheus's alerts and deploy/grafana's dashboards query only metrics that exist.
    exported = {name for text in (out, inbound, reg) for name in re.findall(r"^# TYPE (\S+)", text, re.M)}
    suffixes = ("", "_total", "_bucket", "_count", "_sum")
    missing = {
        m for m in referenced_metrics() if not any(m.removesuffix(s) in exported for s in suffixes if m.endswith(s))
    }
    assert missing == set(), f"deploy/ queries metrics no admin port exports: {sorted(missing)}"


async def test_readyz_turns_ready_when_a_policy_bundle_becomes_active(bare_mesh: LocalMesh) -> None:
    mesh = bare_mesh
    await mesh.start_registry(allow_all=False)
    side = await mesh.sidecar("late", wait_ready=False)
    admin = side.addresses["admin"]
    assert await scrape(admin, "/healthz") == (200, "ok\n")
    status, body = await scrape(admin, "/readyz")
    assert status == 503 and "no policy bundle is active" in body
    _, text = await scrape(admin)
    assert sample(text, "meshwarden_sidecar_bundle_revision") == 0

    await mesh.push_bundle(mesh.bundles.make(1, {"allow-all.cedar": ALLOW_ALL}))
    for _ in range(200):
        status, body = await scrape(admin, "/readyz")
        if status == 200:
            break
        await asyncio.sleep(0.05)
    assert (status, body) == (200, "ready\n")
    _, text = await scrape(admin)
    assert sample(text, "meshwarden_sidecar_bundle_revision") == 1


async def test_a_collector_that_is_gone_holds_no_call_up_and_no_shutdown(mesh: LocalMesh) -> None:
    gone = OtlpReceiver()
    await gone.start()
    await gone.stop()  # its port now refuses connections
    mesh.sidecar_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": gone.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    caller = await mesh.sidecar("caller")
    callee, _agent = await mesh.pair("callee")
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        for n in range(20):
            assert (await client.invoke("echo", {"n": n}, session_id="s-gone", timeout=10)).value["echo"] == {"n": n}
    # SIGTERM: the sidecar gives up on the unexported spans and exits 0, not killed after the grace.
    assert await asyncio.gather(caller.stop(), callee.stop()) == [0, 0]
