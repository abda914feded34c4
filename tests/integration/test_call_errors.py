"""Errors on a live mesh: an agent that answers UNAVAILABLE on purpose is told apart from an
agent that cannot be reached, and a keyed call to it is retried on another instance; errors
reach the caller with their kind and data; a refusal at the peer port leaves its span."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

import meshwarden
from meshwarden import error_status, errors
from meshwarden.identity.spiffe_ids import agent_id
from tests.integration.mesh import LocalMesh
from tests.integration.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.integration.test_calls import routable
from tests.integration.test_receipts import stored_when
from tests.integration.test_sidecar_identity import TD, deliver, deliver_echo, our_issuer
from tests.integration.test_telemetry import otel_env

pytestmark = pytest.mark.integration


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    otlp = OtlpReceiver()
    await otlp.start()
    try:
        yield otlp
    finally:
        await otlp.stop()


async def test_an_agent_answering_unavailable_is_its_answer_and_a_keyed_call_goes_elsewhere(mesh: LocalMesh) -> None:
    caller = await mesh.sidecar("frontdesk")
    busy_side, _ = await mesh.pair("worker")
    await mesh.pair("worker")
    busy = busy_side.addresses["instance_id"]
    async with meshwarden.Client(caller.addresses["listen"]) as client:
        seen: set[str] = set()
        deadline = time.monotonic() + 10
        while len(seen) < 2:  # both instances are in the caller's catalog
            seen.add((await routable(client, "probe.runs")).instance_id)
            assert time.monotonic() < deadline, "the second instance never became routable"
        # Without a key, the agent's answer comes back as it is: the agent failed, it was reached.
        for _ in range(40):
            try:
                await client.invoke("probe.busy", {"busy": [busy]}, idempotent=False, timeout=5)
            except errors.AgentFailed as err:
                refused = err
                break
        else:
            raise AssertionError("no unkeyed call reached the busy instance")
        assert refused.status_code() is grpc.StatusCode.UNAVAILABLE and refused.kind == "agent_failed"
        assert refused.instance_id == busy and "model provider is down" in refused.message
        # With a key (the SDK's default), the retry rule fires: each call ends on the other one.
        results = [await client.invoke("probe.busy", {"busy": [busy]}, timeout=5) for _ in range(12)]
    assert {r.instance_id for r in results} == seen - {busy}
    retried = [r for r in results if r.value["attempt"] > 1]
    assert retried, "no keyed call went to the busy instance first (12 calls, two instances)"
    receipts = await stored_when(
        mesh,
        lambda rs: (
            sum(r.direction == "inbound" and r.callee_instance_id == busy and r.status == "UNAVAILABLE" for r in rs)
            >= 1 + len(retried)
        ),
        "the busy instance's refusals",
    )
    answered = [r for r in receipts if r.direction == "inbound" and r.callee_instance_id == busy]
    assert {(r.status, r.error_kind) for r in answered if r.capability == "probe.busy"} == {
        ("UNAVAILABLE", "agent_failed")
    }


async def test_a_forged_identity_claim_at_the_peer_port_leaves_a_span(mesh: LocalMesh, receiver: OtlpReceiver) -> None:
    mesh.sidecar_env = otel_env(receiver)
    callee, _ = await mesh.pair("echoer")
    good = our_issuer(mesh).issue(agent_id(TD, "frontdesk"), 600)
    with pytest.raises(grpc.aio.AioRpcError) as info:  # a sidecar speaking for another agent
        await deliver(callee, good, deliver_echo(callee, claimed_agent="billing"))
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    refused = error_status.from_rpc_error(info.value)
    assert isinstance(refused, errors.Unidentified)

    def the_refusal(spans: list[ReceivedSpan]) -> bool:
        return any(s.service == "echoer-sidecar" and s.attributes.get("error.type") == "unidentified" for s in spans)

    spans = await receiver.wait_for(the_refusal)
    [span] = [s for s in spans if s.attributes.get("error.type") == "unidentified"]
    assert span.span.kind == trace_pb2.Span.SPAN_KIND_SERVER and span.span.name == "invoke_agent echo"
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
