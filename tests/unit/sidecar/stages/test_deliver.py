"""The last inbound hop against a real gRPC agent server: the agent's answer (structured, the
SDK's way) is told apart from an agent that cannot be reached, and an agent cannot pass off
its own failure as one of the mesh's decisions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import pytest

from meshwarden import error_status, errors
from meshwarden.clock import SystemClock
from meshwarden.sidecar.agent_app import AgentApp
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.sidecar.stages import deliver
from meshwarden.usage import Usage
from meshwarden.v1 import agent_pb2, agent_pb2_grpc
from tests.unit.sidecar.fakes import call


class Agent(agent_pb2_grpc.AgentServicer):
    def __init__(self) -> None:
        self.error: errors.MeshError | None = None
        self.plain: grpc.StatusCode | None = None

    async def Handle(
        self, request: agent_pb2.Delivery, context: grpc.aio.ServicerContext[object, object]
    ) -> agent_pb2.Outcome:
        if self.error is not None:
            await error_status.abort(context, self.error)
        if self.plain is not None:
            await context.abort(self.plain, "plain")
        return agent_pb2.Outcome(result_json=b"{}", usage=Usage(model="m", cost_micro_usd=3).to_proto())


@pytest.fixture
async def served() -> AsyncIterator[tuple[Agent, AgentApp]]:
    agent, server = Agent(), grpc.aio.server()
    agent_pb2_grpc.add_AgentServicer_to_server(agent, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    app = AgentApp(f"127.0.0.1:{port}", [])
    yield agent, app
    await app.close()
    await server.stop(None)


@pytest.fixture
def hop(served: tuple[Agent, AgentApp]) -> tuple[Agent, deliver.ToAgent]:
    agent, app = served
    return agent, deliver.ToAgent(app, LocalAgent("billing", "billing-1", "127.0.0.1:1", ""), SystemClock())


def soon() -> float:
    return time.monotonic() + 5


async def test_the_reply_carries_the_usage_the_agent_reported(hop: tuple[Agent, deliver.ToAgent]) -> None:
    _, to_agent = hop
    reply = await to_agent(call(deadline=soon()))
    assert reply.usage == Usage(model="m", cost_micro_usd=3) and reply.instance_id == "billing-1"


async def test_an_agent_answering_unavailable_is_its_answer(hop: tuple[Agent, deliver.ToAgent]) -> None:
    agent, to_agent = hop
    agent.error = errors.AgentFailed(grpc.StatusCode.UNAVAILABLE, "provider down")
    with pytest.raises(errors.AgentFailed) as info:
        await to_agent(call(deadline=soon()))
    assert info.value.status_code() is grpc.StatusCode.UNAVAILABLE and "provider down" in info.value.message
    agent.error, agent.plain = None, grpc.StatusCode.UNAVAILABLE  # no details: gRPC's, not the agent's
    with pytest.raises(errors.PeerUnavailable):
        await to_agent(call(deadline=soon()))


async def test_an_agent_cannot_pass_its_failure_off_as_the_meshs(hop: tuple[Agent, deliver.ToAgent]) -> None:
    agent, to_agent = hop
    agent.error = errors.NotSent("trust me, it never started")  # would be resent without a key
    with pytest.raises(errors.AgentFailed) as info:
        await to_agent(call(deadline=soon()))
    assert info.value.cause == "not_sent" and info.value.status_code() is grpc.StatusCode.UNAVAILABLE


async def test_a_newer_agents_kind_keeps_its_kind(hop: tuple[Agent, deliver.ToAgent]) -> None:
    agent, to_agent = hop
    agent.error = errors.Unclassified(grpc.StatusCode.ABORTED, "quota_spent", "spent", {})
    with pytest.raises(errors.Unclassified) as info:
        await to_agent(call(deadline=soon()))
    assert info.value.kind == "quota_spent"


async def test_an_agent_that_is_not_there_is_unreachable() -> None:
    app = AgentApp("127.0.0.1:1", [])
    try:
        with pytest.raises(errors.PeerUnavailable) as info:
            await deliver.ToAgent(app, LocalAgent("billing", "b-1", "127.0.0.1:1", ""), SystemClock())(
                call(deadline=soon())
            )
    finally:
        await app.close()
    assert "not answering on its callback endpoint" in info.value.message


async def test_the_reply_names_the_version_the_agent_registered_last(served: tuple[Agent, AgentApp]) -> None:
    local = LocalAgent("billing", "billing-1", "127.0.0.1:1", "")
    to_agent = deliver.ToAgent(served[1], local, SystemClock())
    assert (await to_agent(call(deadline=soon()))).version == ""  # nothing registered yet
    local.register("1.4.0", [])
    assert (await to_agent(call(deadline=soon()))).version == "1.4.0"
    local.register("1.5.2", [])  # a new version, registered again in place
    assert (await to_agent(call(deadline=soon()))).version == "1.5.2"
