"""Errors on a live mesh: an agent that answers UNAVAILABLE on purpose is told apart from an
agent that cannot be reached, and a keyed call to it is retried on another instance; errors
reach the caller with their kind and data."""

from __future__ import annotations

import time

import grpc
import pytest

import meshwarden
from meshwarden import errors
from tests.integration.mesh import LocalMesh
from tests.integration.test_calls import routable
from tests.integration.test_receipts import stored_when

pytestmark = pytest.mark.integration


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
