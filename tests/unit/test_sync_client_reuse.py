"""Plain-`def` handlers' nested calls (ctx.invoke_sync) share one channel to the sidecar
instead of opening one per call. The sidecar here is a stand-in for its local API that
records which connection each Invoke came on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from meshwarden.agent import Agent, CallContext
from meshwarden.v1 import agent_pb2, agent_pb2_grpc, sidecar_pb2, sidecar_pb2_grpc


class LocalApi(sidecar_pb2_grpc.SidecarServicer):
    def __init__(self) -> None:
        self.invoked_from: list[str] = []

    async def RegisterAgent(self, request: Any, context: Any) -> sidecar_pb2.RegisterAgentResponse:
        return sidecar_pb2.RegisterAgentResponse(instance_id="i-1", agent="planner")

    async def Invoke(self, request: Any, context: Any) -> sidecar_pb2.InvokeResponse:
        self.invoked_from.append(context.peer())  # "ipv4:127.0.0.1:<the client's port>"
        return sidecar_pb2.InvokeResponse(result_json=b"{}", agent="echo", version="1.0.0")


@pytest.fixture
async def sidecar() -> AsyncIterator[tuple[str, LocalApi]]:
    api = LocalApi()
    server = grpc.aio.server()
    sidecar_pb2_grpc.add_SidecarServicer_to_server(api, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", api
    await server.stop(None)


async def test_blocking_nested_calls_share_one_channel(sidecar: tuple[str, LocalApi]) -> None:
    address, api = sidecar
    agent = Agent(version="1.0.0", sidecar=address, listen="127.0.0.1:0")

    @agent.capability("planner.plan")
    def plan(args: Any, ctx: CallContext) -> dict[str, int]:
        for _ in range(3):
            ctx.invoke_sync("echo.say", {"n": 1})
        return {"calls": 3}

    await agent.start()
    try:
        async with grpc.aio.insecure_channel(agent.listen) as channel:
            stub = agent_pb2_grpc.AgentStub(channel)
            as_its_sidecar = (("authorization", f"Bearer {agent._callback_token}"),)  # the secret it registered
            for n in range(2):
                delivery = agent_pb2.Delivery(call_id=f"c{n}", capability="planner.plan", payload_json=b"{}")
                await stub.Handle(delivery, metadata=as_its_sidecar)
    finally:
        await agent.stop()
    assert len(api.invoked_from) == 6
    assert len(set(api.invoked_from)) == 1  # one connection for all six
