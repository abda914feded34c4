"""Property tests of the edges as processes: hypothesis sends generated requests to a real
sidecar's local API, to its peer API over mTLS (as an enrolled stranger), and to an agent's
callback endpoint, over real sockets. Every answer is one of the statuses that edge may
give (never INTERNAL or UNKNOWN), nothing hangs past its deadline, no process logs a
traceback, and the mesh still serves a good call afterwards.

Hypothesis drives a sync gRPC client from a worker thread, while the test's event loop keeps
the fixture's processes (and their output pipes) going.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest

pytest.importorskip(
    "hypothesis", reason="hypothesis (the test extra) is not installed: regenerate the lock (python3 dev.py lock)"
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meshwarden
from meshwarden.identity.credentials import channel_credentials, expect_peer
from meshwarden.identity.spiffe_ids import agent_id
from meshwarden.v1 import agent_pb2, agent_pb2_grpc, peer_pb2, peer_pb2_grpc, sidecar_pb2, sidecar_pb2_grpc
from tests.integration.mesh import LocalMesh
from tests.integration.test_attacks import _attacker
from tests.integration.test_calls import routable
from tests.integration.test_receipts import support_calls_billing

pytestmark = pytest.mark.integration

EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
# What each edge may answer to whatever it is sent; INTERNAL and UNKNOWN would be bugs.
EDGE_CODES = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAUTHENTICATED,
}
# probe.fail fails on purpose (INTERNAL, with a traceback in the agent's log): not an edge's answer
CAPABILITIES = st.one_of(
    st.sampled_from(["echo", "probe.runs", "nobody.here"]), st.text(max_size=200).filter(lambda c: c != "probe.fail")
)
PAYLOADS = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"{}", b'{"text": "x"}', b'{"n": NaN}', b"[" * 5000, b'{"n": 1e999}', b'{"a":1,"a":2}']),
)
IDS = st.one_of(st.text(max_size=20), st.text(min_size=120, max_size=400), st.just("s\nINFO forged"))


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return,attr-defined]
    return grpc.StatusCode.OK


async def test_the_local_api_answers_anything_with_a_status_it_may_give(mesh: LocalMesh) -> None:
    support = await support_calls_billing(mesh)
    async with meshwarden.Client(support.addresses["listen"]) as client:
        await routable(client, "probe.runs")

    @EXAMPLES
    @given(CAPABILITIES, PAYLOADS, IDS, IDS, IDS)
    def invoke(capability: str, payload: bytes, session: str, schema_hash: str, key: str) -> None:
        request = sidecar_pb2.InvokeRequest(
            capability=capability,
            payload_json=payload,
            session_id=session,
            schema_hash=schema_hash,
            idempotency_key=key,
        )
        with grpc.insecure_channel(support.addresses["listen"]) as channel:
            code = _code(lambda: sidecar_pb2_grpc.SidecarStub(channel).Invoke(request, timeout=10))
        assert code in EDGE_CODES, (code, request)

    await asyncio.to_thread(invoke)
    async with meshwarden.Client(support.addresses["listen"]) as client:
        assert (await client.invoke("echo", {"text": "still"}, timeout=5)).agent == "billing"
    assert "Traceback" not in mesh.logs()


async def test_the_peer_and_agent_apis_refuse_strangers_with_a_status(mesh: LocalMesh) -> None:
    support = await support_calls_billing(mesh)
    async with meshwarden.Client(support.addresses["listen"]) as client:
        billed = await routable(client, "echo", {"text": "x"})
    billing = next(c for c in mesh.children if c.addresses.get("instance_id") == billed.instance_id)
    agent = next(c for c in mesh.children if c.name.endswith(f"agent-{billing.addresses['agent']}"))
    mallory = await _attacker(mesh, "mallory")
    credentials = channel_credentials(mallory, mallory.trust_bundle_pem)
    peer_options = expect_peer(agent_id(mesh.registry.addresses["trust_domain"] if mesh.registry else "", "billing"))

    @EXAMPLES
    @given(CAPABILITIES, PAYLOADS, IDS, IDS, st.integers(0, 2**32 - 1))
    def deliver(capability: str, payload: bytes, call_id: str, session: str, attempt: int) -> None:
        call = peer_pb2.PeerCall(
            call_id=call_id, capability=capability, payload_json=payload, session_id=session, attempt=attempt
        )
        with grpc.secure_channel(billing.addresses["peer"], credentials, options=peer_options) as channel:
            code = _code(lambda: peer_pb2_grpc.PeerStub(channel).Deliver(call, timeout=10))
        assert code in EDGE_CODES, (code, call)
        delivery = agent_pb2.Delivery(call_id=call_id, capability=capability, payload_json=payload, caller_agent="x")
        with grpc.insecure_channel(agent.addresses["listen"]) as channel:
            code = _code(lambda: agent_pb2_grpc.AgentStub(channel).Handle(delivery, timeout=10))
        assert code is grpc.StatusCode.UNAUTHENTICATED, code

    await asyncio.to_thread(deliver)
    async with meshwarden.Client(support.addresses["listen"]) as client:
        assert (await client.invoke("echo", {"text": "still"}, timeout=5)).agent == "billing"
    assert "Traceback" not in mesh.logs()
