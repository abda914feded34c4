"""The channel to the local agent's callback endpoint: the sidecar's --app, unless the agent
names its own address when it registers (an agent that bound port 0, say)."""

from __future__ import annotations

import grpc

from meshwarden.v1 import agent_pb2_grpc


class AgentApp:
    def __init__(self, address: str, options: list[tuple[str, int]]) -> None:
        self._options = options
        self.address = address
        self._channel = grpc.aio.insecure_channel(address, options=options)
        self.stub = agent_pb2_grpc.AgentStub(self._channel)

    async def retarget(self, address: str) -> None:
        if address == self.address:
            return
        old = self._channel
        self.address = address
        self._channel = grpc.aio.insecure_channel(address, options=self._options)
        self.stub = agent_pb2_grpc.AgentStub(self._channel)
        await old.close(grace=5.0)  # calls already under way on the old channel finish

    async def close(self) -> None:
        await self._channel.close()
