"""Usage and outcomes with real processes: usage travels from the callee agent back to its
caller, nested calls name their parent, and a session's outcome reaches the registry."""

from __future__ import annotations

import grpc
import pytest

import meshwarden
from meshwarden import errors
from meshwarden.v1 import receipts_pb2
from tests.integration.mesh import LocalMesh
from tests.integration.test_calls import routable

pytestmark = pytest.mark.integration

USAGE_B = {"model": "gpt-4o-mini", "input_tokens": 1200, "output_tokens": 300, "cost_usd": "0.000360"}
USAGE_C = {"model": "claude-3-5-haiku", "input_tokens": 800, "output_tokens": 100, "cost_micro_usd": 1200}


async def test_usage_travels_back_to_the_caller_and_nested_calls_name_their_parent(mesh: LocalMesh) -> None:
    top = await mesh.sidecar("frontdesk")
    await mesh.pair("planner", "1.0.0", "--work-as", "plan.work")
    await mesh.pair("writer", "1.0.0", "--work-as", "write.work")
    plan = {"usage": USAGE_B, "calls": [{"capability": "write.work", "args": {"usage": USAGE_C}}]}
    async with meshwarden.Client(top.addresses["listen"]) as client:
        await routable(client, "write.work")
        await routable(client, "plan.work")
        result = await client.invoke("plan.work", plan, session_id="s-usage", workflow_id="w-1", timeout=10)
    assert result.usage == meshwarden.Usage("gpt-4o-mini", 1200, 300, 360)
    child = result.value["children"][0]
    assert child["cost"] == 1200  # the nested caller saw its callee's usage too
    assert child["value"]["parent_call_id"] == result.call_id  # the tree: B's call to C names B's call
    assert child["value"]["session_id"] == "s-usage" and child["value"]["workflow_id"] == "w-1"


async def test_a_call_without_usage_has_none(mesh: LocalMesh) -> None:
    top = await mesh.sidecar("frontdesk")
    await mesh.pair("echoer")
    async with meshwarden.Client(top.addresses["listen"]) as client:
        result = await routable(client, "echo", {"n": 1})
    assert result.usage is None


async def test_an_outcome_is_stored_once_and_a_second_is_refused_naming_the_first(mesh: LocalMesh) -> None:
    side = await mesh.sidecar("frontdesk")
    async with meshwarden.Client(side.addresses["listen"]) as client:
        await client.report_outcome("s-out", "succeeded", "ticket T-1 resolved")
        with pytest.raises(errors.OutcomeAlreadyReported) as refused:
            await client.report_outcome("s-out", "failed")
        with pytest.raises(grpc.aio.AioRpcError) as bad:  # past the SDK's own check: the sidecar refuses too
            await client._stub.ReportOutcome(receipts_pb2.ReportOutcomeRequest(session_id="s-x", outcome="won"))
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "outcome" in (bad.value.details() or "")
    assert "succeeded" in refused.value.message and "frontdesk" in refused.value.message
